"""The tf.train.Example contract of the Examples artifact (TF Object Detection API keys).

``encode_example`` / ``decode_example`` turn a ``DetectionExample`` into bytes
and back in plain Python; ``feature_spec`` and ``parse_example`` do the same
inside ``tf.data`` (boxes as normalised ``[ymin, xmin, ymax, xmax]``, labels
1-based as in ``label_map.json``). Images are JPEG or PNG; decode them with
``tf.io.decode_image(..., channels=3, expand_animations=False)``. Encoding and
decoding need no TensorFlow import (see ``example_proto``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from model_maker.core.data.example_proto import example_class

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
SOURCE_ID = "image/source_id"
FILENAME = "image/filename"
XMIN = "image/object/bbox/xmin"
YMIN = "image/object/bbox/ymin"
XMAX = "image/object/bbox/xmax"
YMAX = "image/object/bbox/ymax"
LABEL = "image/object/class/label"
TEXT = "image/object/class/text"
AREA = "image/object/area"
IS_CROWD = "image/object/is_crowd"
CLASS_LABEL = "image/class/label"
CLASS_TEXT = "image/class/text"

REQUIRED_KEYS = (ENCODED, HEIGHT, WIDTH, SOURCE_ID)
BOX_KEYS = (YMIN, XMIN, YMAX, XMAX)


@dataclass(frozen=True)
class DetectionExample:
    """One record of the Examples artifact.

    Attributes:
      encoded: JPEG or PNG bytes.
      format: "jpeg" or "png".
      height: image height in pixels.
      width: image width in pixels.
      source_id: image id as text (the COCO ground truth uses ``int(source_id)``).
      filename: file name of the source image.
      boxes: normalised (ymin, xmin, ymax, xmax) per object.
      labels: 1-based class id per object.
      texts: class name per object.
      areas: box area in pixels per object.
      is_crowd: COCO iscrowd flag per object.
      class_label: image-level class id (classification; 0 when unset).
      class_text: image-level class name.
    """

    encoded: bytes
    format: str
    height: int
    width: int
    source_id: str
    filename: str = ""
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    labels: tuple[int, ...] = ()
    texts: tuple[str, ...] = ()
    areas: tuple[float, ...] = ()
    is_crowd: tuple[int, ...] = ()
    class_label: int = 0
    class_text: str = ""


def encode_example(example: DetectionExample) -> bytes:
    """Serialise ``example`` as a tf.train.Example."""
    proto = example_class()()
    feature = proto.features.feature

    def put_bytes(key: str, values: Sequence[bytes]) -> None:
        feature[key].bytes_list.value.extend(values)

    def put_int(key: str, values: Sequence[int]) -> None:
        feature[key].int64_list.value.extend(values)

    def put_float(key: str, values: Sequence[float]) -> None:
        feature[key].float_list.value.extend(values)

    put_bytes(ENCODED, [example.encoded])
    put_bytes(FORMAT, [example.format.encode()])
    put_int(HEIGHT, [example.height])
    put_int(WIDTH, [example.width])
    put_bytes(SOURCE_ID, [example.source_id.encode()])
    put_bytes(FILENAME, [example.filename.encode()])
    for index, key in enumerate(BOX_KEYS):
        put_float(key, [box[index] for box in example.boxes])
    put_int(LABEL, example.labels)
    put_bytes(TEXT, [t.encode() for t in example.texts])
    put_float(AREA, example.areas)
    put_int(IS_CROWD, example.is_crowd)
    if example.class_text:
        put_int(CLASS_LABEL, [example.class_label])
        put_bytes(CLASS_TEXT, [example.class_text.encode()])
    return proto.SerializeToString()


class RecordError(ValueError):
    """A record that breaks the contract."""


def decode_example(serialized: bytes) -> DetectionExample:
    """Parse a tf.train.Example written by ``encode_example`` (or the TF OD API tools).

    Raises:
      RecordError: not a tf.train.Example, a required key missing, or box lists of
        different lengths.
    """
    try:
        proto = example_class().FromString(serialized)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError subclasses
        raise RecordError(f"not a tf.train.Example ({exc})") from None
    feature = proto.features.feature
    missing = [k for k in REQUIRED_KEYS if k not in feature]
    if missing:
        raise RecordError(f"missing key(s) {', '.join(missing)}")

    def ints(key: str) -> list[int]:
        return list(feature[key].int64_list.value) if key in feature else []

    def floats(key: str) -> list[float]:
        return list(feature[key].float_list.value) if key in feature else []

    def texts(key: str) -> list[str]:
        values = feature[key].bytes_list.value if key in feature else []
        return [v.decode("utf-8", "replace") for v in values]

    coords = [floats(k) for k in BOX_KEYS]
    count = len(coords[0])
    labels = ints(LABEL)
    if any(len(c) != count for c in coords) or len(labels) != count:
        raise RecordError(
            "box coordinate and label lists differ in length "
            f"({', '.join(str(len(c)) for c in coords)}, labels {len(labels)})"
        )
    names = texts(TEXT)
    areas = floats(AREA)
    crowd = ints(IS_CROWD)
    height, width = ints(HEIGHT)[0], ints(WIDTH)[0]
    boxes = tuple(zip(*coords, strict=True)) if count else ()
    if len(areas) != count:
        areas = [(b[2] - b[0]) * height * (b[3] - b[1]) * width for b in boxes]
    class_text = texts(CLASS_TEXT)
    class_label = ints(CLASS_LABEL)
    fmt = texts(FORMAT)
    return DetectionExample(
        encoded=feature[ENCODED].bytes_list.value[0],
        format=fmt[0] if fmt else "",
        height=height,
        width=width,
        source_id=texts(SOURCE_ID)[0],
        filename=(texts(FILENAME) or [""])[0],
        boxes=boxes,
        labels=tuple(labels),
        texts=tuple(names) if len(names) == count else ("",) * count,
        areas=tuple(areas),
        is_crowd=tuple(crowd) if len(crowd) == count else (0,) * count,
        class_label=class_label[0] if class_label else 0,
        class_text=class_text[0] if class_text else "",
    )


def feature_spec() -> dict:
    """The ``tf.io.parse_single_example`` spec of the contract's keys."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    spec = {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        SOURCE_ID: tf.io.FixedLenFeature([], tf.string),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL: tf.io.VarLenFeature(tf.int64),
        TEXT: tf.io.VarLenFeature(tf.string),
        AREA: tf.io.VarLenFeature(tf.float32),
        IS_CROWD: tf.io.VarLenFeature(tf.int64),
        CLASS_LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        CLASS_TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    for key in BOX_KEYS:
        spec[key] = tf.io.VarLenFeature(tf.float32)
    return spec


def parse_example(serialized, decode_image: bool = True) -> dict:
    """Parse one serialised record in ``tf.data``.

    Returns a dict of tensors: ``image`` (uint8 [H, W, 3], or the encoded bytes
    when ``decode_image`` is false), ``height``, ``width``, ``source_id``,
    ``boxes`` (float32 [N, 4], normalised ymin, xmin, ymax, xmax), ``classes``
    (int64 [N], 1-based), ``areas``, ``is_crowd``, ``class_label``.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, feature_spec())
    dense = {key: tf.sparse.to_dense(parsed[key]) for key in (*BOX_KEYS, LABEL, AREA, IS_CROWD)}
    image = parsed[ENCODED]
    if decode_image:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return {
        "image": image,
        "height": parsed[HEIGHT],
        "width": parsed[WIDTH],
        "source_id": parsed[SOURCE_ID],
        "boxes": tf.stack([dense[k] for k in BOX_KEYS], axis=-1),
        "classes": dense[LABEL],
        "areas": dense[AREA],
        "is_crowd": dense[IS_CROWD],
        "class_label": parsed[CLASS_LABEL],
    }
