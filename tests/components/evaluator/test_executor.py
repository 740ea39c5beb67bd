"""Evaluator executor, TFX-template style: real artifacts in temp dirs, Executor().Do."""

import json

import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.evaluation import EvaluateOptions
from model_maker.core.settings import from_json, to_json
from tests.model_maker.core.detector_fixtures import write_examples_artifact, write_tflite_artifact


def _artifact(kind, uri):
    art = kind()
    art.uri = str(uri)
    return art


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from tfx.types import standard_artifacts

    from components.artifacts import TFLiteModel
    from components.evaluator.executor import Executor

    root = tmp_path_factory.mktemp("evaluator")
    examples = _artifact(standard_artifacts.Examples, write_examples_artifact(root))
    examples.split_names = '["eval"]'
    tflite = _artifact(TFLiteModel, write_tflite_artifact(root / "tflite"))
    evaluation = _artifact(standard_artifacts.ModelEvaluation, root / "evaluation")
    blessing = _artifact(standard_artifacts.ModelBlessing, root / "blessing")
    Executor().Do(
        {"examples": [examples], "tflite": [tflite]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"options": to_json(EvaluateOptions(candidate="ptq_int8", metric="AP", max_drop=1.0,
                                            latency_runs=3, split="eval"))},
    )  # fmt: skip
    return root, evaluation, blessing


def test_metrics_reports_and_blessing_are_written(evaluated):
    root, evaluation, blessing = evaluated
    doc = json.loads((root / "evaluation" / "metrics.json").read_text())
    assert [v["variant"] for v in doc["variants"]] == ["float32", "ptq_int8"]
    for entry in doc["variants"]:
        assert entry["metrics"]["AP"] == pytest.approx(1.0)  # grid detector: exact boxes
        assert entry["num_images"] == 6
        assert entry["bytes"] == (root / "tflite" / entry["file"]).stat().st_size
        assert entry["metrics"]["AP_/class0"] == pytest.approx(1.0)  # names from label_map.json
    assert (root / "evaluation" / "report.md").is_file()
    assert (root / "evaluation" / "report.html").is_file()
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_string_custom_property("candidate") == "ptq_int8"
    assert (root / "blessing" / "BLESSED").is_file()
    assert not [p for p in (root / "evaluation").iterdir() if p.name.startswith(".detections")]


def test_per_image_outputs_are_in_the_evaluation_artifact(evaluated):
    root, _, _ = evaluated
    out = root / "evaluation"
    strict = {"parse_constant": lambda c: pytest.fail(f"not strict JSON: {c}")}
    detections = json.loads((out / "detections.json").read_text(), **strict)
    curves = json.loads((out / "pr_curves.json").read_text(), **strict)
    assert detections["baseline"] == "float32" and len(detections["images"]) == 6
    # the grid detector's int8 file finds the same cells: nothing differs, images in id order
    assert [i["id"] for i in detections["images"]] == [1, 2, 3, 4, 5, 6]
    assert all(i["difference"] == {"ptq_int8": 0.0} for i in detections["images"])
    assert [i["thumbnail"] for i in detections["images"]] == [
        f"gallery/{k}.jpg" for k in range(1, 7)
    ]
    assert sorted(p.name for p in (out / "gallery").iterdir()) == [f"{k}.jpg" for k in range(1, 7)]
    assert list(curves["variants"]) == ["float32", "ptq_int8"]
    assert curves["variants"]["ptq_int8"]["all"]["mean"] == [1.0] * 101  # AP 1.0
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/jpeg;base64,') == 6 * 2  # top 6 images, 2 variants


def test_component_wires_channels_and_parameters():
    from tfx.types import channel_utils, standard_artifacts

    from components.artifacts import TFLiteModel
    from components.evaluator.component import Evaluator

    component = Evaluator(
        examples=channel_utils.as_channel([standard_artifacts.Examples()]),
        tflite=channel_utils.as_channel([TFLiteModel()]),
        options=EvaluateOptions(candidate="ptq_int8", max_drop=2.0),
    )
    options = json.loads(component.exec_properties["options"])
    assert options["candidate"] == "ptq_int8"
    assert options["max_drop"] == 2.0
    assert from_json(EvaluateOptions, component.exec_properties["options"]) == EvaluateOptions(
        candidate="ptq_int8", max_drop=2.0
    )
    assert component.outputs["blessing"].type is standard_artifacts.ModelBlessing
    assert component.outputs["evaluation"].type is standard_artifacts.ModelEvaluation


def test_keras_model_input_becomes_the_float_baseline(tmp_path, monkeypatch):
    from tfx.types import standard_artifacts

    import model_maker.object_detector.evaluator as evaluator
    from components.artifacts import TFLiteModel
    from components.evaluator.executor import Executor
    from model_maker.core.litert_detector import TFLiteDetectorFactory

    tflite_dir = write_tflite_artifact(tmp_path / "tflite", {"float32": False, "qat_int8": False})
    created = []

    def fake_factory(model_dir, nms):
        # Stands in for the trained Lite0 (slow to build): the float32 file plays the Keras model.
        created.append((model_dir, nms))
        return TFLiteDetectorFactory(str(tflite_dir / "float32.tflite"))

    monkeypatch.setattr(evaluator, "KerasDetectorFactory", fake_factory)
    examples = _artifact(standard_artifacts.Examples, write_examples_artifact(tmp_path, count=3))
    model = _artifact(standard_artifacts.Model, tmp_path / "model")
    evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    Executor().Do(
        {"examples": [examples], "tflite": [_artifact(TFLiteModel, tflite_dir)], "model": [model]},
        {"evaluation": [evaluation], "blessing": [blessing]},
        {"options": to_json(EvaluateOptions(candidate="qat_int8", metric="AP", max_drop=1.0,
                                            latency_runs=0, split="eval"))},
    )  # fmt: skip
    assert created == [(str(tmp_path / "model"), NMSOptions(max_detections=25,
                        score_threshold=1e-8, iou_threshold=0.5))]  # fmt: skip
    doc = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert [v["variant"] for v in doc["variants"]] == ["keras_float", "float32", "qat_int8"]
    assert doc["baseline"] == "keras_float" and doc["blessing"]["baseline"] == "keras_float"
    assert blessing.get_int_custom_property("blessed") == 1
