"""QAT EfficientDet-Lite0 (128 px, 2 classes): layer coverage, start from float, shared head."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)


@pytest.fixture(scope="module")
def lite0():
    import tf_keras as keras

    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config
    from model_maker.object_detector.qat_model import quantize_efficientdet

    keras.utils.set_random_seed(3)
    float_model = build_efficientdet_lite(
        get_model_config("efficientdet-lite0", image_size=128), num_classes=2
    )
    rng = np.random.default_rng(0)
    # Non-trivial batch-norm statistics, so "equal to float" means something.
    for layer in float_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.2, n),
                    rng.normal(0, 0.2, n),
                    rng.uniform(0.5, 1.5, n),
                ]
            )
    return float_model, quantize_efficientdet(float_model)


def test_every_lite0_layer_is_quantized_or_on_the_allow_list(lite0):
    from model_maker.object_detector.qat_model import (
        ALLOWED_UNQUANTIZED,
        fake_quant_points,
        quantization_coverage,
    )

    float_model, qat_model = lite0
    coverage = quantization_coverage(float_model, qat_model)
    assert set(coverage) == {layer.name for layer in float_model.layers}
    bad = {
        name: status for name, status in coverage.items() if not status.startswith(("quan", "all"))
    }
    assert bad == {}
    kinds = {layer.name: type(layer).__name__ for layer in float_model.layers}
    allowed = collections.Counter(kinds[n] for n, s in coverage.items() if s.startswith("allowed"))
    assert set(allowed) <= set(ALLOWED_UNQUANTIZED)
    for name, kind in kinds.items():
        if kind == "Conv2D":
            assert "kernel" in coverage[name], name
        if kind == "DepthwiseConv2D":
            assert "depthwise_kernel" in coverage[name], name
        if kind == "ReLU":
            assert "output" in coverage[name], name
    # the input normalisation is quantized (x * scale, then + offset: both outputs)
    assert coverage["input_normalization"] == "quantized: output"
    (scale,) = [m for m in qat_model.submodules if m.name == "quant_input_normalization_scale"]
    assert fake_quant_points(scale) == ["output"]
    # logits are quantized (shared prediction convs own an output quantizer)
    assert "output" in coverage["class_net_predict_pointwise"]
    assert "output" in coverage["box_net_predict_pointwise"]
    # residual adds without a ReLU after them carry their own fake quant
    residual = [n for n, k in kinds.items() if k == "Add" and n.startswith("efficientnet")]
    assert residual and all(coverage[n] == "quantized: output" for n in residual)


def test_fake_quant_model_with_quantizers_off_equals_float(lite0):
    from model_maker.core.qat import fake_quant_disabled

    float_model, qat_model = lite0
    x = np.random.default_rng(1).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    expected = [t.numpy() for t in float_model(x, training=False)]
    with fake_quant_disabled(qat_model):
        got = [t.numpy() for t in qat_model(x, training=False)]
    assert [g.shape for g in got] == [(2, 3069, 2), (2, 3069, 4)]
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-5)
    with_quant = [t.numpy() for t in qat_model(x, training=False)]
    assert np.abs(with_quant[0] - expected[0]).max() > 1e-3


def test_head_keeps_one_shared_kernel_per_conv_and_a_batch_norm_per_level(lite0):
    from model_maker.object_detector.qat_model import QuantizedSharedHead

    float_model, qat_model = lite0
    heads = {
        layer.name: layer for layer in qat_model.layers if isinstance(layer, QuantizedSharedHead)
    }
    assert set(heads) == {"class_logits", "box_encodings"}
    head = heads["class_logits"]
    assert head.repeats == 3 and head.levels == [3, 4, 5, 6, 7]
    kernels = [w for w in head.weights if w.name.endswith("depthwise_kernel:0")]
    assert len(kernels) == head.repeats + 1  # shared across the 5 levels
    gammas = [w for w in head.weights if w.name.endswith("gamma:0")]
    assert len(gammas) == head.repeats * 5
    float_kernel = float_model.get_layer("class_net_conv1_depthwise").depthwise_kernel.numpy()
    (qat_kernel,) = [w for w in kernels if "class_net_conv1_depthwise/" in w.name]
    np.testing.assert_array_equal(qat_kernel.numpy(), float_kernel)
