"""QAT fine-tuning on the tiny Examples, the saved QAT model, and its int8 conversion."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)

# The smallest EfficientDet-Lite0 variant that keeps every kind of layer.
TINY_ARCH = {
    "num_classes": 2,
    "image_size": 128,
    "fpn_num_filters": 16,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "depth_coefficient": 0.1,
    "label_map": {1: "square", 2: "bar"},
}


@pytest.fixture(scope="module")
def qat_run(tiny_examples, tmp_path_factory):
    from model_maker.core.qat import QATHParams
    from model_maker.object_detector.dataloader import DataLoader
    from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
    from model_maker.object_detector.qat_trainer import save_qat_model, train_qat

    spec = EfficientDetSpec(
        "efficientdet-lite0", uri="", hparams=TINY_ARCH, var_freeze_expr="", tf_random_seed=7
    )
    float_model = spec.create_model()
    train = DataLoader.from_examples(str(tiny_examples), "train")
    val = DataLoader.from_examples(str(tiny_examples), "eval")
    hparams = QATHParams(learning_rate=0.05, batch_size=2, epochs=4, decay_steps=100)
    # One fixed batch (no augmentation) to measure the loss before and after QAT.
    images, labels = next(iter(spec.make_dataset(list(train.files), 6, is_training=False)))
    loss_fn = spec._loss()

    def fixed_batch_loss(model):
        return float(loss_fn(labels, *model(images, training=False))["det_loss"])

    loss_before = fixed_batch_loss(float_model)
    result = train_qat(
        spec,
        float_model,
        list(train.files),
        hparams,
        steps_per_epoch=3,
        eval_files=list(val.files),
        eval_json_file=val.annotations_json,
        calibration_images=4,
    )
    out = tmp_path_factory.mktemp("qat_model")
    save_qat_model(result, spec.trained_config(), str(out))
    result.history["fixed_batch_loss"] = [loss_before, fixed_batch_loss(result.model)]
    return spec, float_model, result, out


def test_a_few_qat_steps_reduce_the_loss(qat_run):
    _, _, result, _ = qat_run
    assert result.steps == 12
    losses = result.history["loss"]
    assert len(losses) == 4
    assert losses[-1] < losses[0], losses
    # the same 6 train images, before (float = QAT with fake quant off) and after 12 QAT steps
    before, after = result.history["fixed_batch_loss"]
    assert after < 0.99 * before, (before, after)


def test_qat_leaves_the_fixed_input_normalisation_alone(qat_run):
    """When the normalisation was a trainable depthwise conv in the QAT graph, its
    gradient on raw pixels dwarfed every other one and training it wrecked the
    detector; now it is x * scale then + offset, constants with nothing to train."""
    import tf_keras as keras

    from model_maker.core.qat import fake_quant_disabled

    _, _, result, _ = qat_run
    model = result.model
    assert [v.name for v in model.trainable_variables if "normalization" in v.name] == []
    side = int(model.input.shape[1])  # every pixel value 0..255, in every channel
    pixels = np.resize(np.arange(256.0), (1, side, side, 1)).repeat(3, -1).astype(np.float32)
    normalise = keras.Model(model.input, model.get_layer("quant_input_normalization").output)
    with fake_quant_disabled(model):
        got = normalise(pixels, training=False).numpy()
    np.testing.assert_allclose(got, (pixels - 127.0) / 128.0, rtol=0, atol=1e-6)


def test_fake_quant_model_is_evaluated_on_the_eval_split(qat_run):
    _, _, result, out = qat_run
    for key in ("AP", "AP50", "AP75", "ARmax100"):
        assert -1.0 <= result.metrics[key] <= 1.0
    report = json.loads((out / "qat.json").read_text())
    assert report["metrics"]["AP50"] == pytest.approx(result.metrics["AP50"])
    assert report["hparams"] == {
        "learning_rate": 0.05,
        "batch_size": 2,
        "epochs": 4,
        "decay_steps": 100,
        "decay_rate": 0.96,
        "strategy": "default",
    }


def test_saved_qat_model_reloads_with_the_same_function(qat_run):
    from model_maker.object_detector.qat_model import load_qat_model

    spec, _, result, out = qat_run
    assert (out / "keras" / "config.json").is_file()
    model, config = load_qat_model(str(out))
    assert config.num_classes == 2 and config.image_size == 128
    x = np.random.default_rng(3).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    for a, b in zip(model(x, training=False), result.model(x, training=False), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.slow
def test_qat_model_converts_to_int8_tflite_with_int8_kernels(qat_run):
    """Every CONV_2D / DEPTHWISE_CONV_2D has int8 weights and int8 activations; only the
    model's float input is quantized and its outputs dequantized; outputs match the
    fake-quant Keras model within a few quantization steps. (~3 min: conversion.)"""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from model_maker.object_detector.qat_model import load_qat_model

    _, _, _, out = qat_run
    model, _ = load_qat_model(str(out))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    flatbuffer = converter.convert()
    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    counts = collections.Counter(op["op_name"] for op in ops)
    assert counts["CONV_2D"] >= 20 and counts["DEPTHWISE_CONV_2D"] >= 15
    for op in ops:
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            kernel = tensors[op["inputs"][1]]
            assert kernel["dtype"] == np.int8, kernel["name"]
            quant = kernel["quantization_parameters"]
            # per channel: one scale per output channel
            assert len(quant["scales"]) == kernel["shape"][quant["quantized_dimension"]] > 1
            assert tensors[op["inputs"][0]]["dtype"] == np.int8
            assert tensors[op["outputs"][0]]["dtype"] == np.int8
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
            float_io = [
                tensors[i]["name"]
                for i in [*op["inputs"], *op["outputs"]]
                if i >= 0 and tensors[i]["dtype"] == np.float32
            ]
            assert float_io == [], (op["op_name"], float_io)
    assert counts["QUANTIZE"] == 1 and counts["DEQUANTIZE"] == 2
    x = np.random.default_rng(4).uniform(0, 255, (1, 128, 128, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    keras_out = {o.shape[-1]: o.numpy() for o in model(x, training=False)}
    for detail in interpreter.get_output_details():
        got = interpreter.get_tensor(detail["index"])
        scale = detail["quantization_parameters"]["scales"]
        expected = keras_out[got.shape[-1]]
        step = float(scale[0]) if len(scale) else np.abs(expected).max() / 127
        assert np.abs(got - expected).max() <= 8 * max(step, 1e-3) + 0.05 * np.abs(expected).max()


def test_qat_resumes_from_its_checkpoint_after_the_last_finished_epoch(tiny_examples, tmp_path):
    """A first call stops after epoch 1 (as a crash would leave it); a second call asking for
    2 epochs restores weights, ranges, optimizer step and epoch, and trains epoch 2 only."""
    from model_maker.core.qat import QATHParams
    from model_maker.object_detector.dataloader import DataLoader
    from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
    from model_maker.object_detector.qat_trainer import train_qat

    spec = EfficientDetSpec(
        "efficientdet-lite0", uri="", hparams=TINY_ARCH, var_freeze_expr="", tf_random_seed=7
    )
    float_model = spec.create_model()
    files = list(DataLoader.from_examples(str(tiny_examples), "train").files)
    ckpt = str(tmp_path / "ckpt")

    def run(epochs):
        hparams = QATHParams(learning_rate=0.05, batch_size=2, epochs=epochs, decay_steps=100)
        return train_qat(
            spec,
            float_model,
            files,
            hparams,
            steps_per_epoch=2,
            calibration_images=4,
            checkpoint_dir=ckpt,
        )

    first = run(1)
    assert first.steps == 2 and len(first.history["loss"]) == 1
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.suffix == ".index") == [
        "ckpt-1.index"
    ]
    second = run(2)
    assert second.steps == 4  # the optimizer's step came back from the checkpoint
    assert len(second.history["loss"]) == 1  # only epoch 2 was trained
    # Nothing left: a third call restores epoch 2 and returns its weights unchanged,
    # quantizer ranges included (they are among the weights; nothing is recalibrated).
    third = run(2)
    assert third.steps == 4 and third.history == {}
    for a, b in zip(third.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
