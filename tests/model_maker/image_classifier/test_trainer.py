"""train_from_examples / qat_from_examples / convert / evaluate: the classifier's pipeline calls."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.options import ModelOptions, TrainOptions
from model_maker.image_classifier.options import ClassifierTrainerOptions

LABELS = ["red", "green", "blue"]  # the fixture's label-map ids 2, 3, 7 in order


def _options(epochs: int = 2) -> ClassifierTrainerOptions:
    return ClassifierTrainerOptions(
        model=ModelOptions(
            task="image_classification",
            name="efficientnet_lite0",
            image_size=32,
            hparams={"do_fine_tuning": True},
        ),
        train=TrainOptions(
            epochs=epochs, batch_size=4, learning_rate=0.01, var_freeze_expr="", seed=3
        ),
    )


@pytest.fixture(scope="module")
def trained(colour_examples, tmp_path_factory):
    from model_maker.image_classifier.trainer import train_from_examples

    work = tmp_path_factory.mktemp("cls_trained")
    metrics = train_from_examples(
        str(colour_examples), str(work / "model"), str(work / "run"), _options()
    )
    return work, metrics


def test_trainer_writes_the_model_layout(trained, colour_examples):
    from model_maker.image_classifier.model_io import load_trained_model, read_config

    work, metrics = trained
    model_dir = work / "model"
    assert json.loads((model_dir / "metrics.json").read_text()) == metrics
    assert metrics["num_images"] == 6 and 0.0 <= metrics["top1"] <= 1.0
    config = read_config(str(model_dir))
    assert (config.task, config.model_name, config.num_classes, config.image_size) == (
        "image_classification",
        "efficientnet_lite0",
        3,
        32,
    )
    assert config.labels == LABELS
    assert config.hparams["do_fine_tuning"] is True
    # TensorBoard scalars of both splits, and the options the run used
    assert list((work / "run" / "train").glob("events.out.tfevents.*"))
    assert list((work / "run" / "validation").glob("events.out.tfevents.*"))
    assert json.loads((work / "run" / "trainer_options.json").read_text())["train"]["epochs"] == 2
    # the rebuilt Keras model and the serving SavedModel compute the same probabilities
    import tensorflow as tf

    model, _ = load_trained_model(str(model_dir))
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    serving = tf.saved_model.load(str(model_dir / "serving")).signatures["serving_default"]
    probabilities = serving(tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        probabilities, tf.nn.softmax(model(images, training=False)).numpy(), atol=1e-4
    )
    # frozen: the weights are constants in the graph, no variables to save and restore
    checkpoint = str(model_dir / "serving" / "variables" / "variables")
    assert [name for name, _ in tf.train.list_variables(checkpoint)] == [
        "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]


class _Killed(Exception):
    pass


def test_training_resumes_after_the_last_finished_epoch(colour_examples, tmp_path):
    """Killed after epoch 1 of 2: the rerun trains epoch 2 only, from the checkpoint."""
    import tf_keras as keras

    from model_maker.image_classifier import train_lib
    from model_maker.image_classifier.dataloader import DataLoader, InputOptions
    from model_maker.image_classifier.image_classifier_spec import get_spec

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise _Killed

    hparams = _options().hparams()
    loader = DataLoader.from_examples(str(colour_examples), "train")
    data = loader.gen_tf_dataset(InputOptions(image_size=32, batch_size=4, seed=1), True)
    spec = get_spec("efficientnet_lite0", 32)
    checkpoints = str(tmp_path / "ckpt")
    model = train_lib.create_model(spec, 3, hparams)
    # the checkpoint callback runs before the kill: epoch 1 is saved
    with pytest.raises(_Killed):
        train_lib.train(model, data, None, hparams, checkpoint_dir=checkpoints,
                        callbacks=[KillAfterFirstEpoch()])  # fmt: skip
    saved = {w.name: w.numpy() for w in model.weights}
    resumed = train_lib.create_model(spec, 3, hparams)
    history = train_lib.train(resumed, data, None, hparams, checkpoint_dir=checkpoints)
    assert len(history.history["loss"]) == 1  # epoch 2 only
    assert int(resumed.optimizer.iterations.numpy()) == 2 * 3  # 12 images at batch 4, twice
    changed = [w.name for w in resumed.weights if not np.array_equal(w.numpy(), saved[w.name])]
    assert changed  # it trained on from the epoch-1 weights
    # a run that finds every epoch done trains nothing and keeps the weights
    again = train_lib.create_model(spec, 3, hparams)
    history = train_lib.train(again, data, None, hparams, checkpoint_dir=checkpoints)
    assert history.history == {}
    for mine, theirs in zip(again.weights, resumed.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.slow  # about 1 minute; tests/pipeline/test_e2e_classification.py runs the same
# stages through the components in the fast suite
def test_qat_convert_and_evaluate_from_the_trained_model(trained, colour_examples, tmp_path):
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.evaluate_options import EvaluateOptions
    from model_maker.core.qat_hparams import QATHParams
    from model_maker.image_classifier.evaluator import evaluate_artifacts
    from model_maker.image_classifier.qat_trainer import load_qat_model, qat_from_examples
    from model_maker.image_classifier.tflite_set import convert_trained_model

    work, float_metrics = trained
    model_dir = str(work / "model")
    qat_dir = tmp_path / "qat"
    result = qat_from_examples(
        str(colour_examples),
        model_dir,
        str(qat_dir),
        QATHParams(learning_rate=0.001, batch_size=4, epochs=1, decay_steps=10),
        export_serving=False,
    )
    report = json.loads((qat_dir / "qat.json").read_text())
    assert report["task"] == "image_classification"
    assert report["steps"] == result.steps == 3
    assert report["float_metrics"]["top1"] == pytest.approx(float_metrics["top1"])
    qat_model, config = load_qat_model(str(qat_dir))
    assert config.labels == LABELS
    for mine, theirs in zip(qat_model.weights, result.model.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    tflite_dir = tmp_path / "tflite"
    manifest = convert_trained_model(
        model_dir,
        str(tflite_dir),
        ConvertOptions(variants=("float32", "qat_int8"), representative_samples=4),
        qat_model_dir=str(qat_dir),
        examples_uri=str(colour_examples),
    )
    assert manifest["task"] == "image_classification" and manifest["num_classes"] == 3
    assert (tflite_dir / "labels.txt").read_text().split() == LABELS
    evaluation = tmp_path / "evaluation"
    outcome = evaluate_artifacts(
        str(colour_examples),
        str(tflite_dir),
        str(evaluation),
        EvaluateOptions(metric="top1", latency_runs=2, max_drop=100.0),
        model_dir=model_dir,
    )
    by_name = {e["variant"]: e for e in outcome.variants}
    assert list(by_name) == ["keras_float", "float32", "qat_int8"]
    assert by_name["float32"]["metrics"]["top1"] == pytest.approx(float_metrics["top1"])
    assert by_name["keras_float"]["confusion_matrix"] == by_name["float32"]["confusion_matrix"]
    assert by_name["qat_int8"]["input_dtype"] == "uint8"
    assert outcome.decision.blessed  # max_drop 100 points: anything passes
    document = json.loads((evaluation / "metrics.json").read_text())
    assert document["classes"] == LABELS and document["blessing"]["metric"] == "top1"
    report_md = (evaluation / "report.md").read_text()
    assert "## Confusion matrices" in report_md and "| red |" in report_md
    html = (evaluation / "report.html").read_text()
    assert "<h3>qat_int8</h3>" in html


def test_evaluator_refuses_files_whose_labels_are_not_the_datas(trained, colour_examples, tmp_path):
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.errors import DataError
    from model_maker.image_classifier.evaluator import evaluate_artifacts
    from model_maker.image_classifier.model_io import load_trained_model
    from model_maker.image_classifier.tflite_set import export_tflite_set

    model, _ = load_trained_model(str(trained[0] / "model"))
    tflite_dir = tmp_path / "tflite"
    export_tflite_set(
        str(tflite_dir), model, labels=["red", "blue", "green"],
        convert=ConvertOptions(variants=("float32",)),
    )  # fmt: skip
    with pytest.raises(DataError, match="class id 2 is 'blue' in the model, 'green' in the data"):
        evaluate_artifacts(str(colour_examples), str(tflite_dir), str(tmp_path / "e"))


def test_a_diverging_training_stops_with_one_line_and_is_never_converted(colour_examples, tmp_path):
    """lr 1e4 blows the loss up: training stops naming the learning rate, and a model
    with non-finite weights is refused before the TFLite converter (which would crash)."""
    import dataclasses

    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.divergence import TrainingDiverged
    from model_maker.image_classifier.model_io import load_trained_model, save_trained_model
    from model_maker.image_classifier.tflite_set import convert_trained_model
    from model_maker.image_classifier.trainer import train_from_examples

    options = _options(epochs=3)
    options = dataclasses.replace(
        options, train=dataclasses.replace(options.train, learning_rate=1e4)
    )
    with pytest.raises(TrainingDiverged, match=r"training diverged: loss (nan|inf) at epoch \d, .*"
                       r"lower the learning rate \(now 10000\)"):  # fmt: skip
        train_from_examples(str(colour_examples), str(tmp_path / "m"), str(tmp_path / "r"), options)
    # a model folder whose weights went non-finite another way
    trained_dir = tmp_path / "nan"
    train_from_examples(
        str(colour_examples), str(trained_dir), str(tmp_path / "r2"), _options(epochs=1)
    )
    model, config = load_trained_model(str(trained_dir))
    kernel = model.layers[-1].kernel
    kernel.assign(kernel * np.nan)
    save_trained_model(model, config, str(trained_dir / "keras"))
    with pytest.raises(TrainingDiverged, match="holds non-finite weights .*_logits/kernel"):
        convert_trained_model(str(trained_dir), str(tmp_path / "t"),
                              ConvertOptions(variants=("float32",)))  # fmt: skip
