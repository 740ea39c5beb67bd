"""The per-convolution section of bench/bench_int8_parts.py: what it times, how it sums."""

import pathlib
import sys

import pytest

_BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def parts():
    sys.path.insert(0, str(_BENCH))
    try:
        import bench_int8_parts
    finally:
        sys.path.remove(str(_BENCH))
    return bench_int8_parts


def _model():
    import tf_keras as keras

    images = keras.Input((16, 16, 3), batch_size=1)
    stem = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(images)
    shared = keras.layers.DepthwiseConv2D(3, padding="same", name="shared_dw")
    small = keras.layers.MaxPooling2D(2)(stem)
    a, b, c = shared(stem), shared(small), shared(stem)
    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, keras.layers.Conv2D(4, 1, name="pointwise")(inner_in))
    return keras.Model(images, [inner(a), b, c])


def test_conv_calls_counts_each_call_of_a_shared_layer_by_its_input_shape(parts):
    calls = {(c.kind, c.input_shape, n) for c, n in parts.conv_calls(_model()).items()}
    assert calls == {
        ("3x3 conv", (16, 16, 3), 1),
        ("depthwise", (8, 8, 8), 2),  # the same layer on the same shape: one file, two calls
        ("depthwise", (4, 4, 8), 1),
        ("1x1 conv", (8, 8, 8), 1),  # found inside the nested model
    }


def test_kind_totals_weights_each_file_by_its_calls(parts):
    layers = [
        {"kind": "depthwise", "calls": 2, "float32_ms": 1.0, "int8_ms": 1.0},
        {"kind": "depthwise", "calls": 1, "float32_ms": 3.0, "int8_ms": 2.0},
        {"kind": "1x1 conv", "calls": 4, "float32_ms": 3.0, "int8_ms": 1.0},
    ]
    totals = parts.kind_totals(layers)
    assert [row["kind"] for row in totals] == ["1x1 conv", "depthwise"]  # by float32 time
    assert totals[0] == {
        "kind": "1x1 conv",
        "calls": 4,
        "float32_ms": 12.0,
        "int8_ms": 4.0,
        "ratio": 3.0,
    }
    assert totals[1]["calls"] == 3
    assert totals[1]["float32_ms"] == pytest.approx(5.0)
    assert totals[1]["int8_ms"] == pytest.approx(4.0)
    assert totals[1]["ratio"] == pytest.approx(1.25)


def test_the_int8_file_of_a_convolution_is_that_one_int8_op(parts):
    from model_maker.core.tflite_convert import list_ops

    spec = parts.ConvSpec("depthwise", (8, 8, 16), (3, 3), strides=(2, 2))
    int8 = list_ops(parts.single_conv_file(spec, int8=True))
    assert [(op.name, op.input_types[0], op.output_types[0]) for op in int8] == [
        ("DEPTHWISE_CONV_2D", "INT8", "INT8")
    ]  # no QUANTIZE / DEQUANTIZE is timed with it
    pointwise = parts.ConvSpec("1x1 conv", (8, 8, 16), (1, 1), strides=(2, 2), filters=4)
    float32 = list_ops(parts.single_conv_file(pointwise, False))
    assert [(op.name, op.input_types[0]) for op in float32] == [("CONV_2D", "FLOAT32")]
