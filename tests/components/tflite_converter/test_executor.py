"""TFLiteConverter executor, TFX-template style: real artifacts in temp dirs, Executor().Do.

The Model artifacts hold a micro EfficientDet-Lite (64 px, one BiFPN cell,
depth 0.1, 2 classes) so a conversion takes seconds, not minutes; the graph is
the real one (backbone, BiFPN, shared heads, NearestUpsampling).
"""

import json

import numpy as np
import pytest

from tests.model_maker.object_detector.tiny_examples import write_tiny_examples

MICRO = {
    "image_size": 64,
    "fpn_num_filters": 16,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "depth_coefficient": 0.1,
}
LABELS = {1: "square", 2: "bar"}


def _artifact(kind, uri):
    art = kind()
    art.uri = str(uri)
    return art


def _micro_model():
    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config
    from model_maker.object_detector.model_io import TrainedModelConfig

    config = get_model_config("efficientdet-lite0", **MICRO)
    model = build_efficientdet_lite(config, len(LABELS))
    trained = TrainedModelConfig(
        model_name=config.model_name,
        num_classes=len(LABELS),
        image_size=config.image_size,
        hparams={},
        label_map=LABELS,
        model_config=config.as_dict(),
    )
    return model, trained


def _write_model_artifact(root):
    from model_maker.object_detector.model_io import save_trained_model

    model, trained = _micro_model()
    save_trained_model(model, trained, str(root / "model" / "keras"))
    return root / "model", model, trained


def _run(root, properties, qat_uri=None, with_examples=True):
    from tfx.types import standard_artifacts

    from components.artifacts import TFLiteModel
    from components.tflite_converter.executor import Executor

    inputs = {"model": [_artifact(standard_artifacts.Model, root / "model")]}
    if with_examples:
        inputs["examples"] = [_artifact(standard_artifacts.Examples, root / "examples")]
    if qat_uri is not None:
        inputs["qat_model"] = [_artifact(standard_artifacts.Model, qat_uri)]
    tflite = _artifact(TFLiteModel, root / "tflite")
    Executor().Do(inputs, {"tflite": [tflite]}, properties)
    return tflite


def _properties(variants, with_nms=True):
    """The executor's ``options`` property: TFLiteSetOptions as JSON."""
    from model_maker.core.detection_postprocess import NMSOptions
    from model_maker.core.quantization import ConvertOptions
    from model_maker.core.settings import to_json
    from model_maker.object_detector.tflite_set import TFLiteSetOptions

    options = TFLiteSetOptions(
        convert=ConvertOptions(
            variants=tuple(variants),
            int8_input_type="uint8",
            representative_samples=4,
            with_nms=with_nms,
        ),
        postprocess=NMSOptions(max_detections=7, score_threshold=0.0, iou_threshold=0.6),
    )
    return {"options": to_json(options)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("converter")
    write_tiny_examples(root / "examples")
    _write_model_artifact(root)
    tflite = _run(root, _properties(["ptq_int8"]))
    return root, tflite


def test_ptq_variant_labels_and_manifest_are_written(converted):
    root, tflite = converted
    out = root / "tflite"
    assert (out / "labels.txt").read_text() == "square\nbar\n"
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["variants"]
    assert entry["variant"] == "ptq_int8"
    assert entry["file"] == "ptq_int8.tflite"
    assert entry["bytes"] == (out / "ptq_int8.tflite").stat().st_size > 0
    assert entry["input"]["name"] == "images"
    assert entry["input"]["shape"] == [1, 64, 64, 3]
    assert entry["input"]["dtype"] == "uint8"
    assert (entry["input"]["scale"], entry["input"]["zero_point"]) == (1.0, 0)
    assert entry["outputs"] == ["boxes", "classes", "scores", "num_detections"]
    shapes = {o["name"]: o["shape"] for o in entry["output_details"]}
    assert shapes == {
        "boxes": [1, 7, 4],
        "classes": [1, 7],
        "scores": [1, 7],
        "num_detections": [1],
    }
    assert entry["with_nms"] is True and "anchors_file" not in entry
    assert entry["postprocess"] == {
        "max_detections": 7,
        "score_threshold": 0.0,
        "iou_threshold": 0.6,
        "pre_nms_top_k": 1000,
    }
    assert entry["quantization"]["quantization_steps"] == 4
    assert entry["quantization"]["supported_ops"] == ["TFLITE_BUILTINS_INT8"]
    assert manifest["num_classes"] == 2 and manifest["labels_file"] == "labels.txt"
    # TFLite metadata (labels packed inside) in the file, and said so in the manifest
    assert entry["metadata"]["present"] and entry["metadata"]["version"] == "1"
    assert "TFLite metadata v1" in manifest["metadata"] and "ptq_int8" in manifest["metadata"]
    assert entry["bytes"] == (root / "tflite" / "ptq_int8.tflite").stat().st_size
    assert tflite.get_string_custom_property("variants") == "ptq_int8"


def test_every_conv_of_the_ptq_file_is_int8(converted):
    from model_maker.core.tflite_convert import list_ops

    root, _ = converted
    ops = list_ops((root / "tflite" / "ptq_int8.tflite").read_bytes())
    kernels = [op.weight_type for op in ops if op.weight_type]
    assert len(kernels) > 20 and set(kernels) == {"INT8"}
    assert [op.name for op in ops if op.custom] == ["TFLite_Detection_PostProcess"]


def test_the_evaluator_reads_the_set(converted):
    from model_maker.core.evaluation import variants_from_manifest

    root, _ = converted
    (variant,) = variants_from_manifest(str(root / "tflite"))
    detector = variant.factory()
    found = detector.detect(np.zeros((48, 80, 3), np.uint8))
    assert len(found) == 7  # score threshold 0 keeps max_detections
    assert found.boxes_yxyx.shape == (7, 4)


def test_int8_without_examples_or_qat_model_is_a_usage_error(converted, tmp_path):
    from model_maker.core.errors import UsageError

    root, _ = converted
    with pytest.raises(UsageError, match="Examples"):
        _run(root, _properties(["ptq_int8"]), with_examples=False)
    with pytest.raises(UsageError, match="QAT model"):
        _run(root, _properties(["float32", "qat_int8"]))


def test_component_wires_channels_and_parameters():
    from tfx.types import channel_utils, standard_artifacts

    from components.artifacts import TFLiteModel
    from components.tflite_converter.component import TFLiteConverter
    from model_maker.core.detection_postprocess import NMSOptions
    from model_maker.core.quantization import ConvertOptions
    from model_maker.core.settings import from_json
    from model_maker.object_detector.tflite_set import TFLiteSetOptions

    options = TFLiteSetOptions(
        convert=ConvertOptions(variants=("float32", "ptq_int8"), with_nms=False),
        postprocess=NMSOptions(max_detections=10),
    )
    component = TFLiteConverter(
        model=channel_utils.as_channel([standard_artifacts.Model()]),
        examples=channel_utils.as_channel([standard_artifacts.Examples()]),
        options=options,
    )
    assert component.outputs["tflite"].type is TFLiteModel
    props = json.loads(component.exec_properties["options"])
    assert props["convert"]["variants"] == ["float32", "ptq_int8"]
    assert props["convert"]["with_nms"] is False
    assert props["postprocess"]["max_detections"] == 10
    assert from_json(TFLiteSetOptions, component.exec_properties["options"]) == options
    assert "qat_model" not in component.inputs or component.inputs.get("qat_model") is None


@pytest.mark.slow
def test_full_set_with_qat_model_and_raw_variant(tmp_path):
    """float32, ptq_int8 and qat_int8 (QAT artifact of the QATTrainer layout), then raw."""
    from model_maker.core.evaluation import variants_from_manifest
    from model_maker.core.qat import QATHParams
    from model_maker.core.tflite_convert import list_ops
    from model_maker.object_detector.qat_model import quantize_efficientdet
    from model_maker.object_detector.qat_trainer import QATResult, save_qat_model

    write_tiny_examples(tmp_path / "examples")
    _, model, trained = _write_model_artifact(tmp_path)
    qat = quantize_efficientdet(model)
    qat(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32), training=True)
    save_qat_model(QATResult(qat, QATHParams(), 0, 0.0), trained, str(tmp_path / "qat"))
    variants = ["float32", "ptq_int8", "qat_int8"]
    _run(tmp_path, _properties(variants), qat_uri=tmp_path / "qat")
    manifest = json.loads((tmp_path / "tflite" / "manifest.json").read_text())
    assert [e["variant"] for e in manifest["variants"]] == variants
    sizes = {e["variant"]: e["bytes"] for e in manifest["variants"]}
    assert sizes["float32"] / sizes["ptq_int8"] > 3.0
    assert sizes["float32"] / sizes["qat_int8"] > 3.0
    for name in ("ptq_int8", "qat_int8"):
        ops = list_ops((tmp_path / "tflite" / f"{name}.tflite").read_bytes())
        assert {op.weight_type for op in ops if op.weight_type} == {"INT8"}
    assert manifest["variants"][2]["source_model"] == "qat"
    for variant in variants_from_manifest(str(tmp_path / "tflite")):
        assert len(variant.factory().detect(np.zeros((64, 64, 3), np.uint8))) == 7

    # raw outputs + anchors for GPU delegates: the Evaluator still scores it
    raw_root = tmp_path / "raw"
    raw_root.mkdir()
    (raw_root / "model").symlink_to(tmp_path / "model")
    _run(raw_root, _properties(["float32"], with_nms=False), with_examples=False)
    (entry,) = json.loads((raw_root / "tflite" / "manifest.json").read_text())["variants"]
    assert entry["with_nms"] is False and entry["anchors_file"] == "float32.anchors.npy"
    assert entry["outputs"] == ["box_encodings", "class_scores"]
    anchors = np.load(raw_root / "tflite" / "float32.anchors.npy")
    assert anchors.shape == (64 // 8 * 64 // 8 * 9 + 16 * 9 + 4 * 9 + 9 + 9, 4)
    (variant,) = variants_from_manifest(str(raw_root / "tflite"))
    assert len(variant.factory().detect(np.zeros((64, 64, 3), np.uint8))) == 7
