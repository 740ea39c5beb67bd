"""The whole pipeline for an image classifier, tiny and for real: the same six components.

See tests/tiny_classification.py for the run (class folders with their own
train/ and eval/ splits, EfficientNet-Lite0 at 32 px, one float and one QAT
epoch, three TFLite variants, the Evaluator's top-1 table and blessing, the Pusher).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.pipeline.test_e2e import _runs, _states, _store
from tests.tiny_classification import CLASSES

ALL = {"DetectionExampleGen", "Trainer", "QATTrainer", "TFLiteConverter", "Evaluator", "Pusher"}


@pytest.fixture(scope="module")
def run(tiny_classification):
    return tiny_classification.root, tiny_classification.done, tiny_classification.latest


def test_every_component_ran(run):
    root, _, _ = run
    store = _store(root)
    # the fixture's run is the first; the notebook test may rerun it (all from the cache)
    assert _states(store, _runs(store)[0]) == dict.fromkeys(ALL, "COMPLETE")


def test_converter_wrote_classifier_files(run):
    root, _, _ = run
    (manifest_path,) = root.glob("TFLiteConverter/tflite/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["task"] == "image_classification"
    assert [e["variant"] for e in manifest["variants"]] == ["float32", "ptq_int8", "qat_int8"]
    for entry in manifest["variants"]:
        assert entry["outputs"] == ["probabilities"] and entry["softmax"] is True
        assert entry["input"]["shape"] == [1, 32, 32, 3]
        assert entry["metadata"]["present"] is True
    for variant in ("ptq_int8", "qat_int8"):
        (entry,) = [e for e in manifest["variants"] if e["variant"] == variant]
        # raw pixels in: uint8 with scale 1 and zero point 0
        assert entry["input"]["dtype"] == "uint8"
        assert entry["input"]["scale"] == pytest.approx(1.0)
        assert entry["input"]["zero_point"] == 0
    labels = (manifest_path.parent / "labels.txt").read_text().split()
    assert labels == list(CLASSES)


def test_metrics_table_and_blessing(run):
    _, done, latest = run
    document = json.loads(open(os.path.join(latest["evaluation"], "metrics.json")).read())
    assert document["task"] == "image_classification"
    assert document["classes"] == list(CLASSES)
    by_name = {e["variant"]: e for e in document["variants"]}
    assert set(by_name) == {"keras_float", "float32", "ptq_int8", "qat_int8"}
    for entry in by_name.values():
        assert entry["num_images"] == 8
        matrix = np.asarray(entry["confusion_matrix"])
        assert matrix.shape == (2, 2) and matrix.sum() == 8
        top1 = entry["metrics"]["top1"]
        assert top1 == pytest.approx(np.trace(matrix) / 8)
        assert "top5" not in entry["metrics"]  # two classes
        assert 0.0 <= entry["metrics"]["macro_f1"] <= 1.0
    # The float32 file and the Keras model are the same function.
    assert by_name["float32"]["metrics"]["top1"] == by_name["keras_float"]["metrics"]["top1"]
    assert by_name["float32"]["latency"]["runs"] == 2
    base = by_name["keras_float"]["metrics"]["top1"]
    cand = by_name["qat_int8"]["metrics"]["top1"]
    assert latest["blessed"] == (cand >= base - 0.01 - 1e-9)
    assert document["blessing"]["metric"] == "top1"
    for word in ("keras_float", "ptq_int8", "qat_int8", "top1", "Confusion"):
        assert word in done.stdout, done.stdout
    if latest["blessed"]:
        assert os.path.isfile(os.path.join(latest["pushed"], "qat_int8.tflite"))
    else:
        assert latest["pushed"] == ""


def test_int8_file_in_litert_gives_the_evaluators_top1(run):
    """The int8 files, run by LiteRT with uint8 input on the Examples' eval split
    outside the pipeline, give the top-1 the Evaluator reported for them."""
    from model_maker.image_classifier.dataloader import DataLoader, InputOptions
    from model_maker.image_classifier.evaluate import evaluate_tflite

    root, _, latest = run
    document = json.loads(open(os.path.join(latest["evaluation"], "metrics.json")).read())
    by_name = {e["variant"]: e for e in document["variants"]}
    (examples,) = root.glob("DetectionExampleGen/examples/*")
    (tflite_dir,) = root.glob("TFLiteConverter/tflite/*")
    loader = DataLoader.from_examples(str(examples), "eval")
    for variant in ("ptq_int8", "qat_int8"):
        scores = evaluate_tflite(
            str(tflite_dir / f"{variant}.tflite"),
            loader.gen_tf_dataset(InputOptions(image_size=32, batch_size=3)),
            num_classes=2,
        )
        assert scores["input_dtype"] == "uint8"
        assert scores["top1"] == by_name[variant]["metrics"]["top1"]
        assert scores["confusion_matrix"] == by_name[variant]["confusion_matrix"]


def _event_scalars(folder):
    """{tag: [(step, value), ...]} of the TensorBoard event files in ``folder``."""
    import tensorflow as tf

    found = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = (
                    float(tf.make_ndarray(value.tensor))
                    if value.HasField("tensor")
                    else value.simple_value
                )
                found.setdefault(value.tag, []).append((event.step, number))
    return found


def test_qat_trainer_logs_the_trainers_scalars(run):
    root, _, _ = run
    (trainer_run,) = root.glob("Trainer/model_run/*")
    (qat_run,) = root.glob("QATTrainer/model_run/*")
    float_train = _event_scalars(trainer_run / "train")
    qat_train = _event_scalars(qat_run / "train")
    # The same train scalars as the float run, one point per QAT epoch (1 here).
    assert set(float_train) <= set(qat_train) and "epoch_loss" in qat_train
    assert [step for step, _ in qat_train["epoch_loss"]] == [1]
    assert all(np.isfinite(v) for _, v in qat_train["epoch_loss"])
    # The fake-quant model's top-1 on the eval split, at the last QAT epoch.
    qat_validation = _event_scalars(qat_run / "validation")
    report = json.loads(next(root.glob("QATTrainer/qat_model/*/qat.json")).read_text())
    assert qat_validation["epoch_top1"] == [(1, pytest.approx(report["metrics"]["top1"]))]


def test_dashboard_reads_the_evaluators_predictions(run):
    from dashboard.gallery import read_predictions

    _, _, latest = run
    evaluation = latest["evaluation"]
    document = json.loads(open(os.path.join(evaluation, "metrics.json")).read())
    gallery = read_predictions(os.path.join(evaluation, "predictions.json"))
    assert not gallery.error and gallery.skipped == 0
    assert gallery.classes == list(CLASSES)
    assert set(gallery.variants) == {e["variant"] for e in document["variants"]}
