import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model_maker.core.data.images import load_image
from model_maker.core.data.records import (
    DetectionExample,
    RecordError,
    decode_example,
    encode_example,
    parse_example,
)


def _png(width=8, height=6):
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 7, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


EXAMPLE = DetectionExample(
    encoded=_png(),
    format="png",
    height=6,
    width=8,
    source_id="42",
    filename="a.png",
    boxes=((0.1, 0.2, 0.5, 0.75), (0.0, 0.0, 1.0, 1.0)),
    labels=(1, 3),
    texts=("cat", "dog"),
    areas=(12.0, 48.0),
    is_crowd=(0, 1),
)


def test_encode_decode_round_trip():
    decoded = decode_example(encode_example(EXAMPLE))
    assert (
        decoded.source_id == "42" and decoded.labels == (1, 3) and decoded.texts == ("cat", "dog")
    )
    np.testing.assert_allclose(decoded.boxes, EXAMPLE.boxes, atol=1e-7)
    assert decoded.is_crowd == (0, 1) and decoded.encoded == EXAMPLE.encoded


def test_tf_data_parse_matches():
    parsed = parse_example(tf.constant(encode_example(EXAMPLE)))
    assert parsed["image"].shape == (6, 8, 3) and int(parsed["image"][0, 0, 0]) == 7
    np.testing.assert_allclose(parsed["boxes"].numpy(), EXAMPLE.boxes, atol=1e-7)
    assert parsed["classes"].numpy().tolist() == [1, 3]
    assert parsed["source_id"].numpy() == b"42"


def test_decode_rejects_broken_records():
    with pytest.raises(RecordError, match="not a tf.train.Example"):
        decode_example(b"\xff\x00garbage")
    from tensorflow.core.example import example_pb2

    proto = example_pb2.Example()
    proto.features.feature["image/encoded"].bytes_list.value.append(b"x")
    with pytest.raises(RecordError, match="missing key"):
        decode_example(proto.SerializeToString())


def test_loaded_png_passes_through_unchanged():
    data = _png()
    loaded = load_image(data=data)
    assert loaded.encoded == data and loaded.repairs == ()


def test_wire_format_matches_tensorflow():
    serialized = encode_example(EXAMPLE)
    theirs = tf.train.Example.FromString(serialized)
    assert list(theirs.features.feature["image/object/class/label"].int64_list.value) == [1, 3]
    assert theirs.SerializeToString(deterministic=True) == tf.train.Example.FromString(
        theirs.SerializeToString()
    ).SerializeToString(deterministic=True)
    assert decode_example(theirs.SerializeToString()) == decode_example(serialized)
