"""Trainer executor, TFX-template style: real artifacts in temp dirs, Executor().Do."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.model_maker.object_detector.tiny_examples import write_tiny_examples

HPARAMS = {
    "fpn_num_filters": 32,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "max_instances_per_image": 8,
}


def _artifact(kind, uri):
    art = kind()
    art.uri = str(uri)
    return art


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tfx.types import standard_artifacts

    from components.trainer.executor import Executor
    from model_maker.core.detection_postprocess import NMSOptions
    from model_maker.core.options import ModelOptions, TrainOptions
    from model_maker.core.settings import to_json
    from model_maker.object_detector.trainer import TrainerOptions

    root = tmp_path_factory.mktemp("trainer")
    examples = _artifact(standard_artifacts.Examples, write_tiny_examples(root / "examples"))
    examples.split_names = '["train", "eval"]'
    model = _artifact(standard_artifacts.Model, root / "model")
    model_run = _artifact(standard_artifacts.ModelRun, root / "model_run")
    Executor().Do(
        {"examples": [examples]},
        {"model": [model], "model_run": [model_run]},
        {
            "options": to_json(
                TrainerOptions(
                    model=ModelOptions(
                        name="efficientdet_lite0", uri="", hparams=HPARAMS, image_size=128
                    ),
                    train=TrainOptions(
                        epochs=1,
                        batch_size=2,
                        learning_rate=0.1,
                        warmup_epochs=0.5,
                        moving_average_decay=0.9,
                        var_freeze_expr="efficientnet",
                        steps_per_execution=1,
                        seed=3,
                    ),
                    postprocess=NMSOptions(max_detections=10),
                    train_split="train",
                    eval_split="eval",
                )
            ),
        },
    )
    return root, model, model_run


def test_model_artifact_holds_serving_keras_and_metrics(trained):
    root, model, _ = trained
    names = {p.name for p in (root / "model").iterdir()}
    assert {"serving", "keras", "metrics.json"} <= names
    config = json.loads((root / "model" / "keras" / "config.json").read_text())
    assert config["num_classes"] == 2 and config["image_size"] == 128
    assert config["label_map"] == {"1": "square", "2": "bar"}
    # train.learning_rate is the peak at batch_size, in the config and in the spec alike
    assert config["hparams"]["learning_rate"] == pytest.approx(0.1)
    assert config["hparams"]["fpn_cell_repeats"] == 1
    metrics = json.loads((root / "model" / "metrics.json").read_text())
    assert {"AP", "AP50", "ARmax100", "AP_/square", "AP_/bar"} <= set(metrics)
    assert model.get_float_custom_property("AP") == pytest.approx(metrics["AP"])


def test_load_trained_model_rebuilds_the_model_that_serving_runs(trained):
    from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
    from model_maker.object_detector.model_io import load_trained_model

    root, _, _ = trained
    keras_model, config = load_trained_model(str(root / "model"))
    assert keras_model.input_shape == (None, 128, 128, 3)
    image = np.random.default_rng(0).integers(0, 255, (1, 128, 128, 3), dtype=np.uint8)
    logits, encodings = keras_model(tf.cast(image, tf.float32), training=False)
    spec = EfficientDetSpec(config.model_name, "", hparams=dict(config.hparams))
    _, _, ref_scores, ref_num = spec.postprocess(logits, encodings)
    serve = tf.saved_model.load(str(root / "model" / "serving")).signatures["serving_default"]
    out = serve(images=tf.constant(image))
    n = int(ref_num[0])
    assert int(out["num_detections"][0]) == n
    np.testing.assert_allclose(out["scores"][0, :n], ref_scores[0, :n], atol=1e-4)


def test_model_run_holds_tensorboard_logs_and_checkpoints(trained):
    root, _, _ = trained
    run = root / "model_run"
    assert list((run / "train").glob("events.out.*"))
    assert list((run / "validation").glob("events.out.*"))
    assert (run / "ckpt-1.index").is_file()
    options = json.loads((run / "trainer_options.json").read_text())
    assert options["train"]["epochs"] == 1 and options["train"]["moving_average_decay"] == 0.9
    assert options["postprocess"]["max_detections"] == 10


def test_component_wires_channels_and_parameters():
    from tfx.types import channel_utils, standard_artifacts

    from components.trainer.component import Trainer
    from model_maker.core.settings import from_json
    from model_maker.object_detector.trainer import TrainerOptions
    from pipeline.config import load_config

    config = load_config(overrides=["train.epochs=3", "model.hparams.gamma=2.0"])
    examples = channel_utils.as_channel([standard_artifacts.Examples()])
    trainer = Trainer(examples, config.stages().trainer)
    params = json.loads(trainer.exec_properties["options"])
    assert params["train"]["epochs"] == 3 and params["model"]["name"] == "efficientdet_lite0"
    assert params["model"]["hparams"] == {"gamma": 2.0}
    assert params["train"]["var_freeze_expr"] == "(efficientnet|fpn_cells|resample_p6)"
    assert from_json(TrainerOptions, trainer.exec_properties["options"]) == config.stages().trainer
    assert set(trainer.outputs) == {"model", "model_run"}
    assert trainer.outputs["model"].type is standard_artifacts.Model


def test_options_from_json_defaults_and_text_hparams():
    from model_maker.core.settings import from_json
    from model_maker.object_detector.trainer import TrainerOptions

    text = json.dumps({"model": {"name": "efficientdet_lite1", "hparams": "gamma=2"}})
    options = from_json(TrainerOptions, text)
    assert options.model.name == "efficientdet_lite1"
    assert options.model.hparams == {"gamma": 2}  # the "k=v" form, held parsed
    assert (options.train.epochs, options.train.batch_size, options.train.seed) == (50, 64, 111111)
    assert from_json(TrainerOptions, None) == TrainerOptions()
