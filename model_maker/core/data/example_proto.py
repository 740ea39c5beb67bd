"""``tf.train.Example`` declared for protobuf alone, so Beam workers need no TensorFlow import.

Importing TensorFlow's ``example_pb2`` imports all of TensorFlow (10-30 s per
worker process here). The messages below are the schema of
``tensorflow/core/example/{feature,example}.proto`` (same field numbers and
types, so the wire format is identical; the tests check it against
TensorFlow's own classes), built in a private descriptor pool that cannot
clash with TensorFlow's when both are loaded.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name: str, number: int, kind: int, label: int, type_name: str = ""):
    field = message.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="qatflow/tf_example.proto", package="tensorflow", syntax="proto3"
    )
    repeated, optional = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    for name, kind in (
        ("BytesList", _F.TYPE_BYTES),
        ("FloatList", _F.TYPE_FLOAT),
        ("Int64List", _F.TYPE_INT64),
    ):
        message = proto.message_type.add(name=name)
        field = _field(message, "value", 1, kind, repeated)
        if kind != _F.TYPE_BYTES:
            field.options.packed = True
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")),
        start=1,
    ):
        field = _field(feature, name, number, _F.TYPE_MESSAGE, optional, f".tensorflow.{type_name}")
        field.oneof_index = 0
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING, optional)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, optional, ".tensorflow.Feature")
    _field(features, "feature", 1, _F.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    _field(example, "features", 1, _F.TYPE_MESSAGE, optional, ".tensorflow.Features")
    return proto


@functools.cache
def example_class():
    """The ``Example`` message class (built once per process)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))
