"""Per-layer int8 error (TFLite QuantizationDebugger) and the mixed (selective) int8 variant,
on the tiny detector with the NMS op inside, and through both tasks' TFLite set writers."""

import json
import math

import numpy as np
import pytest

from model_maker.core.convert_options import ConvertOptions
from model_maker.core.errors import SettingsError, UsageError
from model_maker.core.layer_errors import (
    LAYER_ERRORS_FILE,
    calibrate_concrete_function,
    keras_layer_names,
    keras_layers_in,
    measure_layer_errors,
    quantize_calibrated,
    select_float_layers,
)
from model_maker.core.quantization import get_default_quantization_config
from model_maker.core.tflite_convert import (
    WEIGHTED_OPS,
    convert_concrete_function,
    describe_tflite,
    list_ops,
    pin_pixel_range,
)
from tests.model_maker.object_detector.tiny_detector import (
    build_tiny_detector,
    calibration_images,
    tiny_anchors,
)


def test_keras_layers_are_read_from_fused_tensor_names():
    names = {"c0", "relu0", "class_p3", "backbone", "blocks_0"}
    assert keras_layers_in("tiny/relu0/Relu6;tiny/c0/Conv2D", names) == ("relu0", "c0")
    assert keras_layers_in("tiny/class_p3/BiasAdd;tiny/class_p3/Conv2D", names) == ("class_p3",)
    # the deepest layer scope wins; the op name itself is never a layer
    assert keras_layers_in("m/backbone/blocks_0/conv/Conv2D", names) == ("blocks_0",)
    assert keras_layers_in("Sigmoid", names) == ()
    assert keras_layers_in("m/c0", names) == ()


@pytest.fixture(scope="module")
def calibrated():
    from model_maker.object_detector.export import build_serving_function

    model = build_tiny_detector()
    serve = build_serving_function(model, tiny_anchors(), num_classes=2)
    images = calibration_images(8)
    config = get_default_quantization_config(images, quantization_steps=8)
    content = calibrate_concrete_function(
        serve, model, config, allow_custom_ops=True, representative_transform=pin_pixel_range
    )
    reference = convert_concrete_function(
        serve, model, config, allow_custom_ops=True, representative_transform=pin_pixel_range
    )
    return model, content, reference, [pin_pixel_range(image[None]) for image in images]


@pytest.fixture(scope="module")
def errors(calibrated):
    model, content, _, images = calibrated
    return measure_layer_errors(content, images[:4], keras_layer_names(model))


def test_layer_errors_are_finite_name_real_keras_layers_and_come_worst_first(calibrated, errors):
    model = calibrated[0]
    names = keras_layer_names(model)
    # every conv of the tiny detector (5 backbone + 3 depthwise + 6 heads) is measured
    convs = [e for e in errors if e.op in WEIGHTED_OPS]
    assert len(convs) == 14
    assert {e.layer for e in convs} == {
        *(f"c{i}" for i in range(5)),
        *(f"{kind}_p{level}" for kind in ("dw", "class", "box") for level in (3, 4, 5)),
    }
    for e in errors:
        for value in (e.rmse_over_scale, e.rmse, e.mean_error, e.max_abs_error, e.scale):
            assert math.isfinite(value)
        assert e.scale > 0 and e.num_elements > 0
        assert set(e.keras_layers) <= names
        assert math.isclose(e.rmse_over_scale, e.rmse / e.scale, rel_tol=1e-6)
        assert e.max_abs_error >= abs(e.mean_error) - 1e-9
    ranks = [e.rmse_over_scale for e in errors]
    assert ranks == sorted(ranks, reverse=True)
    # a quantized op is never better than its own rounding, and not absurdly worse here
    assert 0.05 < max(ranks) < 20


def _tensors(content: bytes) -> list[tuple]:
    """(name, type, shape, scales, zero points, weights) of every tensor of the main subgraph."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    out = []
    for tensor in model.subgraphs[0].tensors:
        q = tensor.quantization
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        out.append(
            (
                tensor.name, tensor.type, tuple(tensor.shape),
                None if q is None or q.scale is None else tuple(q.scale),
                None if q is None or q.zeroPoint is None else tuple(q.zeroPoint),
                None if data is None else bytes(data),
            )
        )  # fmt: skip
    return sorted(out, key=lambda t: t[0])


def test_ptq_from_the_calibration_is_the_converters_own_ptq_int8(calibrated):
    """The set writes ptq_int8 from its one calibration: every tensor (type, shape,
    quantization, weights) and every op as the converter's full-integer conversion."""
    _, content, reference, images = calibrated
    ours = quantize_calibrated(content)
    assert [(o.name, o.input_types, o.output_types) for o in list_ops(ours)] == [
        (o.name, o.input_types, o.output_types) for o in list_ops(reference)
    ]
    assert _tensors(ours) == _tensors(reference)


def _conv_weight_types(content: bytes) -> list[str]:
    return [op.weight_type for op in list_ops(content) if op.weight_type]


def test_mixed_model_keeps_exactly_the_named_layers_float(calibrated, errors):
    _, content, reference, _ = calibrated
    assert [o.name for o in list_ops(quantize_calibrated(content))] == [
        o.name for o in list_ops(reference)
    ]  # no float layer: the converter's own ptq_int8 op list
    chosen = select_float_layers(errors, 0, patterns=("^c1$", "box_p4"))
    assert {e.layer for e in chosen} == {"c1", "box_p4"}
    mixed = quantize_calibrated(content, float_tensors=[e.tensor for e in chosen])
    ops = list_ops(mixed)
    # the two chosen convs take float weights, the twelve others int8 ones
    assert sorted(_conv_weight_types(mixed)) == ["FLOAT32"] * 2 + ["INT8"] * 12
    float_convs = [op for op in ops if op.weight_type == "FLOAT32"]
    assert all(op.input_types[0] == "FLOAT32" for op in float_convs)
    assert describe_tflite(mixed).inputs[0].dtype == "uint8"
    # the worst N by the measured error
    worst = select_float_layers(errors, 3)
    assert worst == list(errors[:3])


def test_float_layer_patterns_that_match_nothing_or_are_not_regexes_are_refused(errors):
    with pytest.raises(UsageError, match="'nothing_here' matches no quantized layer"):
        select_float_layers(errors, 5, patterns=("nothing_here",))
    with pytest.raises(UsageError, match="not a regex"):
        select_float_layers(errors, 5, patterns=("c[",))
    with pytest.raises(SettingsError, match=r"mixed_float_patterns\[0\]: not a regex"):
        ConvertOptions(mixed_float_patterns=("c[",))
    with pytest.raises(SettingsError, match="layer_error_samples"):
        ConvertOptions(variants=("ptq_mixed",), layer_error_samples=0)
    assert not ConvertOptions(variants=("float32",)).measures_layer_errors
    assert ConvertOptions(variants=("float32", "ptq_int8")).measures_layer_errors


def test_detector_set_writes_layer_errors_and_a_running_mixed_variant(tmp_path):
    from model_maker.core.litert_detector import TFLiteDetector
    from model_maker.object_detector.options import TFLiteSetOptions
    from model_maker.object_detector.tflite_set import export_tflite_set

    model = build_tiny_detector()
    images = calibration_images(8)
    options = TFLiteSetOptions(
        convert=ConvertOptions(
            variants=("ptq_int8", "ptq_mixed"),
            representative_samples=8,
            layer_error_samples=3,
            mixed_float_layers=2,
        )
    )
    manifest = export_tflite_set(
        str(tmp_path), model, anchors=tiny_anchors(), num_classes=2,
        label_map={1: "a", 2: "b"}, options=options, representative_data=images,
    )  # fmt: skip
    document = json.loads((tmp_path / LAYER_ERRORS_FILE).read_text())
    assert document["variant"] == "ptq_int8" and document["samples"] == 3
    layers = document["layers"]
    assert [row["rank"] for row in layers] == list(range(1, len(layers) + 1))
    entry = {e["variant"]: e for e in manifest["variants"]}["ptq_mixed"]
    assert [f["tensor"] for f in entry["float_layers"]] == [row["tensor"] for row in layers[:2]]
    assert entry["float_layer_rule"] == "the 2 worst layers by rmse_over_scale"
    content = (tmp_path / "ptq_mixed.tflite").read_bytes()
    float_weights = [t for t in _conv_weight_types(content) if t == "FLOAT32"]
    worst_convs = [row for row in layers[:2] if row["op"] in WEIGHTED_OPS]
    assert len(float_weights) == len(worst_convs)
    detections = TFLiteDetector(str(tmp_path / "ptq_mixed.tflite")).detect(
        images[0].astype(np.uint8)
    )
    assert np.all(np.isfinite(detections.scores))


def test_classifier_set_writes_layer_errors_and_mixed_variant(tmp_path):
    import tf_keras as keras

    from model_maker.image_classifier.tflite_set import export_tflite_set

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(8, 3, name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    manifest = export_tflite_set(
        str(tmp_path), model, labels=["a", "b", "c"], representative_data=images,
        convert=ConvertOptions(
            variants=("ptq_mixed",), representative_samples=6, layer_error_samples=2,
            mixed_float_patterns=("conv_b",),
        ),
    )  # fmt: skip
    rows = json.loads((tmp_path / LAYER_ERRORS_FILE).read_text())["layers"]
    assert {"conv_a", "conv_b", "logits"} <= {row["layer"] for row in rows}
    (entry,) = manifest["variants"]
    assert [f["layer"] for f in entry["float_layers"]] == ["conv_b"]
    assert entry["metadata"]["present"]
    weights = [
        (op.name, op.weight_type)
        for op in list_ops((tmp_path / "ptq_mixed.tflite").read_bytes())
        if op.weight_type
    ]
    assert weights == [("CONV_2D", "INT8"), ("CONV_2D", "FLOAT32"), ("FULLY_CONNECTED", "INT8")]
