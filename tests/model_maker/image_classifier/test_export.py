"""export_tflite of classifiers: softmax inside, int8 graphs, metadata, and LiteRT top-1
against Keras on a toy task a tiny network learns."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)

SIZE = 32
#: Mean colour of each class: six classes a small network separates by colour.
COLOURS = [
    (200, 40, 40),
    (40, 190, 40),
    (40, 40, 210),
    (200, 200, 40),
    (40, 200, 200),
    (190, 40, 190),
]
LABELS = ["red", "green", "blue", "yellow", "cyan", "magenta"]
NUM_CLASSES = len(COLOURS)
#: Allowed top-1 drop (fraction of images) of an int8 file against the Keras model it came from.
INT8_TOP1_TOLERANCE = 0.05


def _toy_images(seed: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Images of noisy solid colours (+-50 per pixel and channel), classes interleaved."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(NUM_CLASSES), per_class)
    base = np.asarray(COLOURS, np.float32)[labels][:, None, None, :]
    noise = rng.uniform(-50, 50, (labels.size, SIZE, SIZE, 3))
    return np.clip(base + noise, 0, 255).astype(np.float32), labels.astype(np.int32)


def _tiny_builder(num_classes, image_size, *, dropout_rate, mean_rgb, stddev_rgb):
    """Normalisation, conv/BN/ReLU6, depthwise/BN/ReLU, residual, head: every int8 pattern.
    Batch-norm momentum 0.9 so the moving statistics settle within the short training."""
    import tf_keras as keras

    from model_maker.image_classifier.models.head import classification_head, normalized_input

    layers = keras.layers
    images, x = normalized_input(image_size, mean_rgb, stddev_rgb)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(momentum=0.9, name="dw_bn")(y)
    y = layers.ReLU(name="dw_relu")(y)
    y = layers.Conv2D(8, 1, use_bias=False, name="project")(y)
    y = layers.BatchNormalization(momentum=0.9, name="project_bn")(y)
    x = layers.Add(name="add")([x, y])
    logits = classification_head(x, num_classes, dropout_rate)
    return keras.Model(images, logits, name="tiny")


def _keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    logits = model.predict(images, batch_size=32, verbose=0)
    return tf.nn.softmax(logits.astype(np.float64)).numpy()


def _litert_probabilities(content: bytes, images: np.ndarray) -> np.ndarray:
    """Straight LiteRT, no qatflow helper: uint8 inputs get the rounded pixels."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    dtype = runner.get_input_details()["images"]["dtype"]
    out = []
    for image in images:
        feed = image[None] if dtype == np.float32 else np.rint(image[None]).astype(dtype)
        out.append(runner(images=feed)["probabilities"][0])
    return np.asarray(out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny float classifier trained on the toy task, its QAT model after a short
    fine-tune, and every variant exported (file bytes + manifest entry)."""
    import tensorflow as tf

    from model_maker.core.qat import QATHParams
    from model_maker.core.quantization import quantization_config_for_variant
    from model_maker.image_classifier.export import export_tflite
    from model_maker.image_classifier.hparams import HParams
    from model_maker.image_classifier.image_classifier_spec import ModelSpec
    from model_maker.image_classifier.qat import quantize_classifier, train_qat
    from model_maker.image_classifier.train_lib import create_model, train

    train_images, train_labels = _toy_images(0, per_class=16)
    eval_images, eval_labels = _toy_images(1, per_class=10)
    train_ds = tf.data.Dataset.from_tensor_slices((train_images, train_labels)).batch(8)
    spec = ModelSpec("tiny", (SIZE, SIZE), 127.5, 127.5, _tiny_builder)
    hp = HParams(
        learning_rate=0.1,
        batch_size=8,
        epochs=4,
        warmup_epochs=0.5,
        do_fine_tuning=True,
        dropout_rate=0.0,
        seed=1,
    )
    float_model = create_model(spec, NUM_CLASSES, hp)
    train(float_model, train_ds, None, hp)
    qat_model = quantize_classifier(float_model)
    qat_hp = QATHParams(learning_rate=0.01, batch_size=8, epochs=1, decay_steps=10, decay_rate=0.9)
    train_qat(qat_model, train_ds, None, qat_hp, calibration_batches=4)

    out_dir = tmp_path_factory.mktemp("cls_tflite")
    files, entries = {}, {}
    for variant in ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8"):
        config = quantization_config_for_variant(
            variant,
            train_images if variant in ("ptq_int8", "qat_int8") else None,
            quantization_steps=48,
        )
        path = out_dir / f"{variant}.tflite"
        entries[variant] = export_tflite(
            qat_model if variant == "qat_int8" else float_model,
            str(path),
            config,
            labels=LABELS,
            variant=variant,
        )
        files[variant] = path.read_bytes()
    return {
        "float": float_model,
        "qat": qat_model,
        "eval": (eval_images, eval_labels),
        "files": files,
        "entries": entries,
    }


def test_float32_probabilities_are_the_keras_softmax(trained):
    from model_maker.core.tflite_convert import describe_tflite

    content = trained["files"]["float32"]
    description = describe_tflite(content)
    assert [o.name for o in description.outputs] == ["probabilities"]
    output = description.output("probabilities")
    assert (output.shape, output.dtype) == ((1, NUM_CLASSES), "float32")
    image = description.inputs[0]
    assert (image.name, image.shape, image.dtype) == ("images", (1, SIZE, SIZE, 3), "float32")
    images, _ = trained["eval"]
    expected = _keras_probabilities(trained["float"], images[:12])
    got = _litert_probabilities(content, images[:12])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("variant", ["float16", "dynamic_range", "ptq_int8", "qat_int8"])
def test_every_variant_outputs_probabilities_that_sum_to_one(trained, variant):
    images, _ = trained["eval"]
    got = _litert_probabilities(trained["files"][variant], images[:6])
    assert got.shape == (6, NUM_CLASSES) and got.dtype == np.float32
    # int8 softmax outputs are multiples of 1/256, so their sum is 1 up to the rounding
    tolerance = 1e-5 if variant in ("float16", "dynamic_range") else NUM_CLASSES / 256
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=tolerance)


@pytest.mark.parametrize("variant", ["ptq_int8", "qat_int8"])
def test_int8_files_are_int8_end_to_end_with_uint8_input(trained, variant):
    from model_maker.core.tflite_convert import WEIGHTED_OPS, describe_tflite, list_ops

    content = trained["files"][variant]
    image = describe_tflite(content).inputs[0]
    assert (image.dtype, image.scale, image.zero_point) == ("uint8", 1.0, 0)
    ops = list_ops(content)
    weighted = [op for op in ops if op.name in WEIGHTED_OPS]
    kinds = collections.Counter(op.name for op in weighted)
    # both hold the input normalisation as int8 MUL + ADD (QAT: two Rescaling halves)
    assert kinds == {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}, kinds
    assert [op.name for op in ops[:3]] == ["QUANTIZE", "MUL", "ADD"]
    for op in weighted:
        assert op.input_types[:2] == ("INT8", "INT8"), op
        assert op.output_types == ("INT8",), op
    softmax = [op for op in ops if op.name == "SOFTMAX"]
    assert len(softmax) == 1 and softmax[0].input_types == ("INT8",)
    float_ops = [op.name for op in ops if "FLOAT32" in op.input_types + op.output_types]
    assert float_ops == ["DEQUANTIZE"], float_ops  # only the float32 output


@pytest.mark.parametrize("variant", ["ptq_int8", "qat_int8"])
def test_int8_top1_through_litert_is_what_evaluate_tflite_reports_and_near_keras(trained, variant):
    import tensorflow as tf

    from model_maker.image_classifier.evaluate import evaluate_tflite
    from model_maker.image_classifier.train_lib import evaluate

    images, labels = trained["eval"]
    content = trained["files"][variant]
    litert_top1 = float(np.mean(_litert_probabilities(content, images).argmax(axis=1) == labels))
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(7)
    reported = evaluate_tflite(content, dataset, num_classes=NUM_CLASSES)
    assert reported["num_images"] == labels.size
    assert reported["input_dtype"] == "uint8"
    assert reported["top1"] == litert_top1
    source = trained["qat" if variant == "qat_int8" else "float"]
    keras_top1 = evaluate(source, dataset)["top1"]
    assert keras_top1 >= 0.9, keras_top1  # the toy task is learnt: the comparison means something
    assert abs(reported["top1"] - keras_top1) <= INT8_TOP1_TOLERANCE, (reported, keras_top1)


def test_manifest_entries_say_softmax_is_inside_and_describe_the_file(trained):
    entries = trained["entries"]
    for variant, entry in entries.items():
        assert entry["variant"] == variant
        assert entry["file"] == f"{variant}.tflite"
        assert entry["bytes"] == len(trained["files"][variant])
        assert entry["softmax"] is True
        assert entry["outputs"] == ["probabilities"]
        assert entry["num_classes"] == NUM_CLASSES
        assert entry["input"]["name"] == "images" and entry["input"]["shape"] == [1, SIZE, SIZE, 3]
        assert (entry["input"]["mean"], entry["input"]["std"]) == (0.0, 1.0)
        assert entry["metadata"]["present"] is True and entry["metadata"]["version"] == "1"
        assert entry["source_model"] == ("qat" if variant == "qat_int8" else "float")
    assert entries["float32"]["quantization"] is None
    assert entries["ptq_int8"]["input"]["dtype"] == "uint8"
    assert entries["ptq_int8"]["quantization"]["calibrated"] is True
    assert entries["float16"]["quantization"]["supported_types"] == ["float16"]


@pytest.mark.parametrize("variant", ["float32", "ptq_int8", "qat_int8"])
def test_metadata_carries_the_labels_and_raw_pixel_normalisation(trained, variant):
    from model_maker.core.tflite_metadata import read_metadata

    metadata = read_metadata(trained["files"][variant])
    assert metadata is not None
    assert metadata.labels == tuple(LABELS)
    assert metadata.task == "image_classifier"
    assert metadata.info.name == f"qatflow {variant}"  # empty ModelInfo.name replaced
    assert (metadata.input.mean, metadata.input.std) == ((0.0,), (1.0,))
    assert [o.model_output for o in metadata.outputs] == ["probabilities"]
    assert metadata.outputs[0].kind == "probabilities"


def test_metadata_none_writes_a_bare_model_and_info_is_kept(trained, tmp_path):
    from model_maker.core.convert_options import ModelInfo
    from model_maker.core.tflite_metadata import read_metadata
    from model_maker.image_classifier.export import export_tflite

    bare = export_tflite(trained["float"], str(tmp_path / "a.tflite"), labels=LABELS, metadata=None)
    assert bare["metadata"] == {"present": False, "reason": "metadata=None"}
    assert read_metadata((tmp_path / "a.tflite").read_bytes()) is None
    named = export_tflite(
        trained["float"],
        str(tmp_path / "b.tflite"),
        labels=LABELS,
        metadata=ModelInfo(name="colours", version="3"),
    )
    assert named["variant"] == "float32"
    info = read_metadata((tmp_path / "b.tflite").read_bytes()).info
    assert (info.name, info.version) == ("colours", "3")


def test_export_rejects_what_does_not_fit(trained, tmp_path):
    from model_maker.core.errors import UsageError
    from model_maker.core.quantization import QuantizationConfig
    from model_maker.image_classifier.export import export_tflite

    path = str(tmp_path / "x.tflite")
    with pytest.raises(UsageError, match="6 classes but 2 labels"):
        export_tflite(trained["float"], path, labels=["a", "b"])
    with pytest.raises(UsageError, match="needs the QAT model"):
        export_tflite(trained["float"], path, labels=LABELS, variant="qat_int8")
    with pytest.raises(UsageError, match="full-integer"):
        export_tflite(trained["float"], path, labels=LABELS, variant="ptq_int8")
    uint8_out = QuantizationConfig.for_int8(
        trained["eval"][0][:2], quantization_steps=2, inference_output_type="uint8"
    )
    with pytest.raises(UsageError, match="float32 probabilities"):
        export_tflite(trained["float"], path, uint8_out, labels=LABELS)


@pytest.mark.slow  # about 3 minutes: MobileNetV2 0.35 at 64 px, five conversions (QAT included)
def test_mobilenet_v2_exports_every_variant(tmp_path):
    import tf_keras as keras

    from model_maker.core.qat import calibrate_fake_quant
    from model_maker.core.quantization import quantization_config_for_variant
    from model_maker.core.tflite_convert import list_ops
    from model_maker.core.tflite_metadata import read_labels
    from model_maker.image_classifier.evaluate import evaluate_tflite
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.models.mobilenet_v2 import build_mobilenet_v2
    from model_maker.image_classifier.qat import quantize_classifier

    keras.utils.set_random_seed(2)
    spec = get_spec("mobilenet_v2", image_size=64)
    model = build_mobilenet_v2(NUM_CLASSES, 64, alpha=0.35, mean_rgb=spec.mean_rgb,
                               stddev_rgb=spec.stddev_rgb)  # fmt: skip
    images = np.random.default_rng(0).uniform(0, 255, (8, 64, 64, 3)).astype(np.float32)
    labels = np.arange(8) % NUM_CLASSES
    qat_model = quantize_classifier(model)
    # a QAT model is calibrated before it trains; uncalibrated, its input range is not 0..255
    calibrate_fake_quant(qat_model, [images])
    models = {"float": model, "qat": qat_model}
    sizes = {}
    for variant in ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8"):
        config = quantization_config_for_variant(variant, images, quantization_steps=8)
        path = str(tmp_path / f"{variant}.tflite")
        source = models["qat" if variant == "qat_int8" else "float"]
        entry = _export_checked(source, path, config, variant)
        content = open(path, "rb").read()
        assert read_labels(content) == tuple(LABELS)
        assert entry["bytes"] == len(content)
        if variant.endswith("int8"):
            assert {op.weight_type for op in list_ops(content) if op.weight_type} == {"INT8"}
        result = evaluate_tflite(path, (images, labels), num_classes=NUM_CLASSES)
        assert result["num_images"] == 8
        sizes[variant] = entry["bytes"]
    assert sizes["ptq_int8"] < sizes["float16"] < sizes["float32"], sizes
    assert sizes["qat_int8"] < sizes["float16"], sizes


def _export_checked(model, path, config, variant):
    from model_maker.image_classifier.export import export_tflite

    entry = export_tflite(model, path, config, labels=LABELS, variant=variant)
    assert entry["variant"] == variant and entry["softmax"] is True
    return entry
