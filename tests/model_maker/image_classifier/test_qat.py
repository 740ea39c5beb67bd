"""QAT classifiers: every Conv/DepthwiseConv/Dense fake-quantized, the float function with
quantizers off, the fixed normalisation frozen, and a short QAT fine-tune."""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)

SIZE = 64
NUM_CLASSES = 3


def _trained_like_batch_norms(model, seed: int) -> None:
    """Batch norms as after training, so "equal to float" and "close to float" mean something
    (fresh statistics are mean 0 / variance 1 and random-init logits are almost 0): random
    gamma and beta, and moving statistics equal to the statistics of each batch norm's input
    on random images (one training-mode pass with momentum 0), so activations are normalised
    as in a trained network instead of exploding through depth."""
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        n = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.5, 1.5, n))
        layer.beta.assign(rng.normal(0.2, 0.2, n))
        layer.momentum = 0.0
    images = rng.uniform(0, 255, (8, *model.input_shape[1:])).astype(np.float32)
    model(images, training=True)
    for layer in norms:
        layer.momentum = 0.99


ARCHITECTURES = [
    pytest.param("mobilenet_v2", id="mobilenet_v2"),  # ~15 s: the fast-suite representative
    pytest.param("mobilenet_multi_avg", id="mobilenet_multi_avg", marks=pytest.mark.slow),
    pytest.param("resnet_50", id="resnet_50", marks=pytest.mark.slow),
    pytest.param("efficientnet_lite0", id="efficientnet_lite0", marks=pytest.mark.slow),
    pytest.param("efficientnet_lite4", id="efficientnet_lite4", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module", params=ARCHITECTURES)
def quantized(request):
    """(name, float model at 64 px with 3 classes, its QAT model)."""
    import tf_keras as keras

    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.qat import quantize_classifier

    keras.utils.set_random_seed(7)
    float_model = get_spec(request.param, image_size=SIZE).build(NUM_CLASSES)
    _trained_like_batch_norms(float_model, seed=1)
    return request.param, float_model, quantize_classifier(float_model)


def test_every_conv_and_dense_is_fake_quantized(quantized):
    import tf_keras as keras

    from model_maker.image_classifier.qat import (
        coverage_table,
        float_layers,
        quantization_coverage,
    )

    name, float_model, qat_model = quantized
    coverage = quantization_coverage(float_model, qat_model)
    weighted = [
        layer.name
        for layer in float_model.layers
        if isinstance(
            layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.Dense
        )
    ]
    assert [row.name for row in coverage] == ["input_normalization", *weighted]
    assert float_layers(coverage) == {}, coverage_table(coverage)
    by_kind = collections.defaultdict(set)
    for row in coverage:
        by_kind[row.kind].add(row.points)
    # kernels per channel; the normalisation is x * scale then + offset, each output quantized
    assert by_kind["Rescaling"] == {("output",)}
    assert all("depthwise_kernel" in p for p in by_kind["DepthwiseConv2D"])
    assert all("kernel" in p for p in by_kind["Conv2D"])
    assert by_kind["Dense"] == {("kernel", "post_activation")}  # the logits are int8 too
    expected_weighted = {"mobilenet_v2": 53, "mobilenet_multi_avg": 52, "resnet_50": 54}
    assert len(weighted) == expected_weighted.get(name, len(weighted))


def test_activations_after_convs_are_fake_quantized(quantized):
    """conv + BN + ReLU fuse: the fake quant sits on the ReLU's output, none in between."""
    import tf_keras as keras

    from model_maker.image_classifier.qat import fake_quant_points

    _, float_model, qat_model = quantized
    relus = [
        layer.name
        for layer in float_model.layers
        if isinstance(layer, keras.layers.ReLU | keras.layers.Activation)
    ]
    assert relus
    wrappers = {
        module.layer.name: module
        for module in qat_model.submodules
        if hasattr(module, "layer") and module.layer.name in relus
    }
    assert set(wrappers) == set(relus)
    missing = [n for n, w in wrappers.items() if "output" not in fake_quant_points(w)]
    assert missing == []


def test_with_quantizers_off_the_qat_model_is_the_float_model(quantized):
    from model_maker.core.qat import fake_quant_disabled

    _, float_model, qat_model = quantized
    x = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    expected = float_model(x, training=False).numpy()
    scale = float(np.abs(expected).max())
    assert scale > 0.1  # non-trivial logits: the comparison below can fail
    with fake_quant_disabled(qat_model):
        got = qat_model(x, training=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1.0, scale))
    # and the quantizers do act when they are on (initial ranges, nothing calibrated yet)
    with_quant = qat_model(x, training=False).numpy()
    assert np.abs(with_quant - expected).max() > 1e-3 * scale


def test_the_fixed_normalisation_has_nothing_to_train(quantized):
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.qat import frozen_variables

    name, _, qat_model = quantized
    spec = get_spec(name)
    scale = qat_model.get_layer("quant_input_normalization_scale")
    offset = qat_model.get_layer("quant_input_normalization")
    # x / std then + (-mean / std), constants of the two Rescaling halves
    assert (scale.layer.scale, scale.layer.offset) == (1 / spec.stddev_rgb, 0.0)
    assert (offset.layer.scale, offset.layer.offset) == (1.0, -spec.mean_rgb / spec.stddev_rgb)
    trainable = [v.name for v in qat_model.trainable_variables if "normalization" in v.name]
    assert trainable == []
    # what QAT loops keep: the input's fake-quant range, pinned to raw pixels 0..255
    # (Keras numbers the layer quantize_layer_N when other QAT models exist in the process)
    names = [
        re.sub(r"quantize_layer_\d+", "quantize_layer", v.name) for v in frozen_variables(qat_model)
    ]
    assert names == ["quantize_layer/quantize_layer_min:0", "quantize_layer/quantize_layer_max:0"]


# --- a short QAT fine-tune on a tiny classifier -----------------------------------------


def _tiny_classifier():
    """Normalisation, conv/BN/ReLU, depthwise/BN/ReLU, residual, head: every QAT pattern."""
    import tf_keras as keras

    from model_maker.image_classifier.models.head import classification_head, normalized_input

    keras.utils.set_random_seed(3)
    layers = keras.layers
    images, x = normalized_input(32, 127.5, 127.5)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.ReLU(name="dw_relu")(y)
    y = layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = layers.BatchNormalization(name="project_bn")(y)
    x = layers.Add(name="add")([x, y])
    logits = classification_head(x, 2, 0.0)
    return keras.Model(images, logits, name="tiny")


def _toy_batches(seed: int):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    labels = np.arange(32) % 2
    images = rng.uniform(0, 90, (32, 32, 32, 3)) + 150 * labels[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.int32))
    ).batch(8)


def test_qat_fine_tune_lowers_the_loss_and_keeps_the_normalisation():
    import tf_keras as keras

    from model_maker.core.qat import QATHParams, fake_quant_disabled
    from model_maker.image_classifier.qat import (
        input_range_variables,
        quantize_classifier,
        train_qat,
    )
    from model_maker.image_classifier.train_lib import evaluate

    float_model = _tiny_classifier()
    qat_model = quantize_classifier(float_model)
    normalisation = qat_model.get_layer("quant_input_normalization")
    normalise = keras.Model(qat_model.input, normalisation.output)
    side = 32  # every pixel value 0..255, in every channel
    pixels = np.resize(np.arange(256.0), (1, side, side, 1)).repeat(3, -1).astype(np.float32)
    relu = qat_model.get_layer("quant_stem_relu")
    hp = QATHParams(learning_rate=0.05, batch_size=8, epochs=3, decay_steps=4, decay_rate=0.9)
    data = _toy_batches(0)
    before = evaluate(qat_model, data)
    history = train_qat(qat_model, data, None, hp, calibration_batches=2)
    after = evaluate(qat_model, data)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses
    assert after["loss"] < before["loss"], (before, after)
    # the normalisation is still (x - 127.5) / 127.5, to the float bit
    with fake_quant_disabled(qat_model):
        normalised = normalise(pixels, training=False).numpy()
    np.testing.assert_allclose(normalised, (pixels - 127.5) / 127.5, rtol=0, atol=1e-6)
    # the input range stays raw pixels although the toy images span about 0..240 only,
    # so the int8 file's uint8 input takes pixels as they are (scale 1, zero point 0)
    low, high = input_range_variables(qat_model)
    assert (float(low.numpy()), float(high.numpy())) == (0.0, 255.0)
    # calibration replaced TFMOT's initial [-6, 6] range of the ReLU6 output by the data's
    ranges = {w.name.split("/")[-1].split(":")[0]: float(w.numpy()) for w in relu.weights}
    assert ranges["output_min"] == 0.0 and 0.0 < ranges["output_max"] <= 6.0
    assert ranges["output_max"] != 6.0


def test_train_qat_needs_a_known_length():
    from model_maker.core.errors import UsageError
    from model_maker.core.qat import QATHParams
    from model_maker.image_classifier.qat import quantize_classifier, train_qat

    qat_model = quantize_classifier(_tiny_classifier())
    with pytest.raises(UsageError, match="steps_per_epoch"):
        train_qat(qat_model, _toy_batches(0).repeat(), None, QATHParams(epochs=1))


@pytest.mark.slow  # about 2 minutes: the TFLite conversion of a QAT model
def test_qat_multi_avg_converts_to_an_all_int8_tflite_graph():
    """The coverage claim checked on the converted graph: only the input QUANTIZE and the
    output DEQUANTIZE touch float; every conv, add, mean and the logits are int8."""
    import collections

    import tensorflow as tf

    from model_maker.core.tflite_convert import list_ops
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.qat import quantize_classifier

    float_model = get_spec("mobilenet_multi_avg", image_size=SIZE).build(NUM_CLASSES)
    _trained_like_batch_norms(float_model, seed=1)
    qat_model = quantize_classifier(float_model)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.uint8
    ops = list_ops(converter.convert())
    kinds = collections.Counter((op.name, op.input_types[0]) for op in ops)
    assert kinds == {
        ("QUANTIZE", "UINT8"): 1,
        ("MUL", "INT8"): 1,  # the input normalisation: x * scale, + offset
        ("DEPTHWISE_CONV_2D", "INT8"): 16,
        ("CONV_2D", "INT8"): 35,
        ("ADD", "INT8"): 12,  # 11 residuals + the normalisation's offset
        ("MEAN", "INT8"): 2,
        ("FULLY_CONNECTED", "INT8"): 1,
        ("DEQUANTIZE", "INT8"): 1,
    }
    weights = {op.weight_type for op in ops if op.weight_type}
    assert weights == {"INT8"}


def test_qat_trains_only_what_the_float_training_trained():
    """A float model trained head-only (do_fine_tuning false): QAT keeps the frozen
    layers' kernels, which TFMOT's wrappers still list as trainable, and moves the head."""
    from model_maker.core.qat import QATHParams
    from model_maker.image_classifier.qat import frozen_variables, quantize_classifier, train_qat

    float_model = _tiny_classifier()
    for layer in float_model.layers:
        layer.trainable = layer.name == "logits"
    qat_model = quantize_classifier(float_model)
    listed = {v.name for v in qat_model.trainable_variables}
    assert "stem/kernel:0" in listed and "dw/depthwise_kernel:0" in listed  # TFMOT's quirk
    frozen = {v.name for v in frozen_variables(qat_model)}
    assert {"stem/kernel:0", "dw/depthwise_kernel:0", "project/kernel:0"} <= frozen
    assert not frozen & {"logits/kernel:0", "logits/bias:0"}

    def values(names):
        return {v.name: v.numpy().copy() for v in qat_model.weights if v.name in names}

    before = values(frozen | {"logits/kernel:0"})
    hp = QATHParams(learning_rate=0.05, batch_size=8, epochs=1, decay_steps=4, decay_rate=0.9)
    train_qat(qat_model, _toy_batches(0), None, hp, calibration_batches=1)
    after = values(frozen | {"logits/kernel:0"})
    for name in (n for n in frozen if not n.startswith("quantize_layer")):  # pinned, not kept
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert not np.array_equal(after["logits/kernel:0"], before["logits/kernel:0"])
