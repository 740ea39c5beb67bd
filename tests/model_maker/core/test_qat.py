"""QATHParams, the qatflow quantize scheme and its helpers, on tiny functional models."""

from __future__ import annotations

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.errors import SettingsError
from model_maker.core.qat import (
    DepthwiseKernelQuantizer,
    QATError,
    QATHParams,
    calibrate_fake_quant,
    calibration_batch_size,
    fake_quant_disabled,
    qat_model_from_config,
    quantize_custom_objects,
    quantize_functional_model,
    rewrite_for_int8,
)


def test_qathparams_defaults_are_the_documented_ones():
    hp = QATHParams()
    assert (hp.learning_rate, hp.batch_size, hp.epochs) == (0.03, 32, 10)
    assert (hp.decay_steps, hp.decay_rate) == (231, 0.96)


def test_qathparams_value_equality():
    assert QATHParams() == QATHParams()
    assert QATHParams(epochs=3) == QATHParams(epochs=3)
    assert QATHParams(epochs=3) != QATHParams()
    assert QATHParams(learning_rate=0.01) != QATHParams()
    assert QATHParams.from_dict({"batch_size": 4, "enabled": True}) == QATHParams(batch_size=4)


def test_qathparams_rejects_bad_values():
    with pytest.raises(SettingsError, match="batch_size"):
        QATHParams(batch_size=0)
    with pytest.raises(SettingsError, match="decay_rate"):
        QATHParams(decay_rate=1.5)


def test_learning_rate_is_exponential_decay():
    schedule = QATHParams(
        learning_rate=0.1, decay_steps=10, decay_rate=0.5
    ).learning_rate_schedule()
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(10)) == pytest.approx(0.05)
    assert float(schedule(5)) == pytest.approx(0.1 * 0.5**0.5)  # not staircase


def _keras():
    import tf_keras as keras

    return keras


def test_depthwise_kernel_quantizer_has_one_range_per_channel():
    keras = _keras()
    rng = np.random.default_rng(0)
    # channel c has magnitude 10**(c-2): one shared range would flush the small ones to 0
    kernel = rng.uniform(-1, 1, (3, 3, 4, 1)) * (10.0 ** (np.arange(4) - 2))[None, None, :, None]
    layer = keras.layers.Layer()
    quantizer = DepthwiseKernelQuantizer()
    weights = quantizer.build(kernel.shape, "depthwise_kernel", layer)
    assert weights["min_var"].shape == (4,)
    out = quantizer(kernel.astype(np.float32), True, weights).numpy()
    for c in range(4):
        step = np.abs(kernel[..., c, 0]).max() / 127.0
        assert np.abs(out[..., c, 0] - kernel[..., c, 0]).max() <= step / 2 + 1e-7
        values = np.round(out[..., c, 0] / step)
        np.testing.assert_allclose(out[..., c, 0], values * step, rtol=1e-5, atol=1e-9)


def _tiny_model(three_way_add: bool = True):
    keras = _keras()
    layers = keras.layers
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="norm")(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.ReLU(6.0, name="dw_relu")(y)
    z = layers.Conv2D(8, 1, name="pw")(y)
    z = layers.BatchNormalization(name="pw_bn")(z)
    inputs_of_add = [x, y, z] if three_way_add else [x, z]
    x = layers.Add(name="fuse")(inputs_of_add)
    x = layers.ReLU(6.0, name="fuse_relu")(x)
    out = layers.Conv2D(4, 1, name="head")(x)
    model = keras.Model(inputs, out)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, 8),
                    rng.normal(0, 0.3, 8),
                    rng.normal(0, 0.3, 8),
                    rng.uniform(0.5, 2, 8),
                ]
            )
    return model


def _pixels(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 16, 16, 3)).astype(np.float32)


def test_rewrite_for_int8_is_exact_and_splits_adds():
    model = _tiny_model()
    rewritten = rewrite_for_int8(model)
    names = {layer.name: type(layer).__name__ for layer in rewritten.layers}
    # x * scale, then + offset: each half gets its own fake quant, no weights
    assert names["norm_scale"] == names["norm"] == "Rescaling"
    scale, offset = rewritten.get_layer("norm_scale"), rewritten.get_layer("norm")
    assert (scale.scale, scale.offset) == (1 / 128, 0.0)
    assert (offset.scale, offset.offset) == (1.0, -127 / 128)
    assert offset.inbound_nodes[0].inbound_layers is scale
    assert not scale.weights and not offset.weights
    assert names["fuse"] == "Add" and names["fuse_sum1"] == "Add"
    assert all(len(layer.inbound_nodes[0].inbound_layers) == 2 for layer in rewritten.layers
               if type(layer).__name__ == "Add")  # fmt: skip
    x = _pixels()
    np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), rtol=0, atol=1e-5)


def test_qat_int8_file_has_the_ptq_files_ops_and_no_depthwise_for_the_normalisation():
    # The normalisation was a 1x1 depthwise conv in the QAT graph: one op more than
    # PTQ's MUL + ADD, which XNNPACK ran 15x slower (0.5 ms of 11 at 320 px on 3
    # channels). Now the two int8 files have the same ops in the same order.
    from model_maker.core.quantization import get_default_quantization_config
    from model_maker.core.tflite_convert import convert_keras_model, list_ops

    model = _tiny_model(three_way_add=False)
    x = _pixels(4, seed=9)
    qat = quantize_functional_model(model)
    calibrate_fake_quant(qat, [x])
    config = get_default_quantization_config(list(x[:, None]), quantization_steps=4)
    ptq_ops = [op.name for op in list_ops(convert_keras_model(model, config))]
    qat_ops = [op.name for op in list_ops(convert_keras_model(qat, config))]
    assert qat_ops == ptq_ops
    assert qat_ops[:3] == ["QUANTIZE", "MUL", "ADD"]
    assert qat_ops.count("DEPTHWISE_CONV_2D") == 1  # the model's own


def test_annotated_rewrite_is_tfmots_annotation_of_the_rewrite():
    # one build instead of rewrite + quantize_annotate_model's clone, same model
    import tensorflow_model_optimization as tfmot

    tfq = tfmot.quantization.keras
    model = _tiny_model()
    with tfq.quantize_scope(quantize_custom_objects()):
        annotated = rewrite_for_int8(model, quantize_custom_objects(), annotate=True)
        reference = tfq.quantize_annotate_model(rewrite_for_int8(model))
    kinds = [type(layer).__name__ for layer in annotated.layers]
    assert kinds[0] == "InputLayer" and set(kinds[1:]) == {"QuantizeAnnotate"}
    assert sorted(layer.layer.name for layer in annotated.layers[1:]) == sorted(
        layer.layer.name for layer in reference.layers[1:]
    )
    x = _pixels()
    np.testing.assert_array_equal(annotated(x).numpy(), reference(x).numpy())
    with tfq.quantize_scope(quantize_custom_objects()):
        from model_maker.core.qat import QatflowQuantizeScheme

        _keras().backend.clear_session()  # both with the same generated names ("quantize_layer")
        ours = tfq.quantize_apply(annotated, scheme=QatflowQuantizeScheme())
        _keras().backend.clear_session()
        theirs = tfq.quantize_apply(reference, scheme=QatflowQuantizeScheme())
    assert ours.get_config() == theirs.get_config()
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    for _ in range(2):
        ours(x, training=True), theirs(x, training=True)
    np.testing.assert_array_equal(ours(x).numpy(), theirs(x).numpy())


def test_quantized_model_equals_float_with_fake_quant_off_and_differs_with_it_on():
    model = _tiny_model()
    qat = quantize_functional_model(model)
    x = _pixels()
    expected = model(x, training=False).numpy()
    with fake_quant_disabled(qat):
        off = qat(x, training=False).numpy()
    np.testing.assert_allclose(off, expected, rtol=0, atol=1e-5)
    for _ in range(3):  # settle the ranges a little
        qat(x, training=True)
    on = qat(x, training=False).numpy()
    assert np.abs(on - expected).max() > 1e-4  # the quantizers are back
    assert np.abs(on - expected).max() < 0.2 * np.abs(expected).max()


def test_unsupported_layer_is_an_error_naming_it():
    keras = _keras()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 1)(inputs)
    x = keras.layers.LayerNormalization(name="odd_norm")(x)
    with pytest.raises(QATError, match="odd_norm"):
        quantize_functional_model(keras.Model(inputs, x))


def test_shared_layers_are_an_error():
    keras = _keras()
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(3, 1, name="shared_conv")
    out = conv(conv(inputs))
    with pytest.raises(QATError, match="shared_conv"):
        quantize_functional_model(keras.Model(inputs, out))


def test_calibration_sets_ranges_from_the_data():
    model = _tiny_model()
    qat = quantize_functional_model(model)
    x = _pixels(4, seed=5)
    expected = model(x, training=False).numpy()
    before = np.abs(qat(x, training=False).numpy() - expected).max()
    assert calibrate_fake_quant(qat, [x[:2], x[2:]]) == 2
    ranges = {w.name: w.numpy() for w in qat.weights if w.name.endswith(("_min:0", "_max:0"))}
    # the input quantizer sees pixels 0..255, no longer the initial [-6, 6]
    (input_max,) = [v for k, v in ranges.items() if "quantize_layer" in k and k.endswith("max:0")]
    assert 250 < float(input_max) <= 255
    # weight ranges are the kernels' own max |w| per channel
    stem = qat.get_layer("quant_stem")
    (kernel_max,) = [w for w in stem.weights if w.name.endswith("kernel_max:0")]
    kernel = [w for w in stem.weights if w.name.endswith("/kernel:0")][0].numpy()
    np.testing.assert_allclose(kernel_max.numpy(), np.abs(kernel).max(axis=(0, 1, 2)), rtol=1e-6)
    after = np.abs(qat(x, training=False).numpy() - expected).max()
    assert after < before
    assert after < 0.05 * np.abs(expected).max()


def _ranges(model):
    """(name, value) of every range variable, in the model's order (names get numbered)."""
    return [(w.name, w.numpy()) for w in model.weights if w.name.endswith(("_min:0", "_max:0"))]


def test_calibration_ranges_do_not_depend_on_the_batching():
    # the QATTrainer calibrates in a few big batches (calibration_batch_size): the
    # ranges are min/max over all images, so they equal those of many small batches
    model = _tiny_model()
    x = _pixels(8, seed=3)
    small, big = quantize_functional_model(model), quantize_functional_model(model)
    assert calibrate_fake_quant(small, [x[i : i + 2] for i in range(0, 8, 2)]) == 4
    assert calibrate_fake_quant(big, [x]) == 1
    small_ranges, big_ranges = _ranges(small), _ranges(big)
    assert len(small_ranges) == len(big_ranges) > 10
    for (name, value), (_, other) in zip(small_ranges, big_ranges, strict=True):
        np.testing.assert_allclose(other, value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_calibration_batch_size_is_a_pixel_budget():
    # 16 images at 320 px; never more than the images asked for, never 0
    assert calibration_batch_size(320, 64) == 16
    assert calibration_batch_size(128, 64) == 64  # the demo: one batch
    assert calibration_batch_size(128, 10) == 10
    assert calibration_batch_size(640, 64) == 4
    assert calibration_batch_size(2048, 64) == 1


def test_building_a_fake_quant_model_converts_nothing_with_autograph(autograph_conversions):
    # tf_keras converts the call of every non-Keras layer (TFMOT's wrappers) each time
    # it builds a functional model; the qatflow calls build without AutoGraph
    qat = quantize_functional_model(_tiny_model())
    rebuilt = qat_model_from_config(qat.get_config(), quantize_custom_objects())
    assert len(rebuilt.layers) == len(qat.layers)
    assert autograph_conversions == []
