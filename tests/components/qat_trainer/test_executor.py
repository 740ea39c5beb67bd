"""QATTrainer executor, TFX-template style: real artifacts in temp dirs, Executor().Do."""

from __future__ import annotations

import json

import pytest

from tests.model_maker.object_detector.tiny_examples import write_tiny_examples

ARCH = {
    "num_classes": 2,
    "label_map": {1: "square", 2: "bar"},
    "image_size": 128,
    "fpn_num_filters": 16,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "depth_coefficient": 0.1,
}


def _artifact(kind, uri):
    art = kind()
    art.uri = str(uri)
    return art


@pytest.fixture(scope="module")
def qat_trained(tmp_path_factory):
    from tfx.types import standard_artifacts

    from components.qat_trainer.executor import Executor
    from model_maker.core.qat import QATHParams
    from model_maker.core.settings import to_json
    from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
    from model_maker.object_detector.model_io import KERAS_SUBDIR, save_trained_model

    root = tmp_path_factory.mktemp("qat_trainer")
    examples = _artifact(standard_artifacts.Examples, write_tiny_examples(root / "examples"))
    examples.split_names = '["train", "eval"]'
    # A float Model artifact as the Trainer writes it (keras/config.json + weights.h5).
    spec = EfficientDetSpec("efficientdet-lite0", uri="", hparams=ARCH, var_freeze_expr="")
    save_trained_model(
        spec.create_model(), spec.trained_config(), str(root / "float" / KERAS_SUBDIR)
    )
    float_model = _artifact(standard_artifacts.Model, root / "float")
    qat_model = _artifact(standard_artifacts.Model, root / "qat")
    Executor().Do(
        {"examples": [examples], "model": [float_model]},
        {"qat_model": [qat_model]},
        {
            "options": to_json(
                QATHParams(
                    learning_rate=0.01, batch_size=2, epochs=1, decay_steps=10, decay_rate=0.9
                )
            ),
            "train_split": "train",
            "eval_split": "eval",
        },
    )
    return root, qat_model


@pytest.mark.slow  # ~2.5 min: QAT + eval + SavedModel export of a tiny Lite0
def test_qat_model_artifact_has_the_trainer_layout_plus_the_qat_graph(qat_trained):
    root, artifact = qat_trained
    out = root / "qat"
    keras_files = {p.name for p in (out / "keras").iterdir()}
    assert {"config.json", "qat_model.json", "qat_weights.h5"} <= keras_files
    assert (out / "serving" / "saved_model.pb").is_file()
    config = json.loads((out / "keras" / "config.json").read_text())
    assert config["num_classes"] == 2 and config["image_size"] == 128
    report = json.loads((out / "qat.json").read_text())
    assert report["hparams"]["epochs"] == 1 and report["hparams"]["decay_rate"] == 0.9
    assert report["steps"] == 3  # ceil(6 train images / batch 2)
    assert {"AP", "AP50", "AP_/square", "AP_/bar"} <= set(report["metrics"])
    assert artifact.get_float_custom_property("fake_quant_AP50") == pytest.approx(
        report["metrics"]["AP50"]
    )


@pytest.mark.slow
def test_load_qat_model_rebuilds_the_fake_quant_model(qat_trained):
    from model_maker.object_detector.qat_model import load_qat_model

    root, _ = qat_trained
    model, config = load_qat_model(str(root / "qat"))
    assert [tuple(o.shape) for o in model.outputs] == [(None, 3069, 2), (None, 3069, 4)]
    assert config.label_map == {1: "square", 2: "bar"}
    assert any("quant" in layer.name for layer in model.layers)


def test_component_parameters_default_to_qathparams():
    from components.qat_trainer.component import QATTrainer
    from components.qat_trainer.executor import OPTIONS_KEY
    from model_maker.core.qat import QATHParams
    from model_maker.core.settings import from_json
    from pipeline.config import QATConfig

    assert from_json(QATHParams, None) == QATHParams()
    assert from_json(QATHParams, '{"epochs": 2, "batch_size": 4}') == QATHParams(
        epochs=2, batch_size=4
    )
    from tfx.types import channel, standard_artifacts

    examples = channel.Channel(type=standard_artifacts.Examples)
    model = channel.Channel(type=standard_artifacts.Model)
    default = QATTrainer(examples, model)
    assert from_json(QATHParams, default.exec_properties[OPTIONS_KEY]) == QATHParams()
    component = QATTrainer(examples, model, QATConfig(epochs=3).hparams())
    params = json.loads(component.exec_properties[OPTIONS_KEY])
    assert (params["epochs"], params["learning_rate"], params["decay_steps"]) == (3, 0.03, 231)
    assert "enabled" not in params
    assert component.outputs["qat_model"].type == standard_artifacts.Model
