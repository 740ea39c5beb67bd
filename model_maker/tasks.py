"""The task switch: one entry point per pipeline stage for detectors and classifiers alike.

The components call these functions (one call each) and stay task-blind:

* the Trainer's options JSON names the task (``model.task``):
  :func:`trainer_options` builds the task's options class and
  :func:`train_from_examples` runs that task's trainer;
* a Model artifact says what it holds (:func:`model_task`: a classifier's
  ``keras/config.json`` has ``"task": "image_classification"``, a detector's
  has no ``task``), which picks the QAT trainer and the converter;
* a TFLite set's ``manifest.json`` says its task, which picks the evaluator.

This module sits above the task packages (it imports both); nothing in
``model_maker.core`` or a task package imports it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from model_maker.core.data import fileio
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.model_folder import CONFIG_FILE, resolve_model_dir
from model_maker.core.options import IMAGE_CLASSIFICATION, OBJECT_DETECTION
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import from_json
from model_maker.core.tflite_manifest import manifest_task
from model_maker.image_classifier.options import ClassifierTrainerOptions
from model_maker.object_detector.options import TFLiteSetOptions, TrainerOptions


def trainer_options(text: str) -> TrainerOptions | ClassifierTrainerOptions:
    """The Trainer's options from their JSON, as the class of the task they name."""
    task = (json.loads(text or "{}").get("model") or {}).get("task", OBJECT_DETECTION)
    cls = ClassifierTrainerOptions if task == IMAGE_CLASSIFICATION else TrainerOptions
    return from_json(cls, text)


def model_task(model_dir: str) -> str:
    """The task of a Trainer/QATTrainer Model artifact (or a folder holding ``config.json``)."""
    path = fileio.join(resolve_model_dir(model_dir), CONFIG_FILE)
    return str(json.loads(fileio.read_text(path)).get("task") or OBJECT_DETECTION)


def train_from_examples(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: TrainerOptions | ClassifierTrainerOptions,
    checkpoint_dir: str | None = None,
) -> dict[str, float]:
    """Train the model ``options`` describe; returns the eval metrics (AP... or top1...)."""
    if isinstance(options, ClassifierTrainerOptions):
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.trainer import train_from_examples as train
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.trainer import train_from_examples as train
    return train(examples_uri, output_dir, run_dir, options, checkpoint_dir=checkpoint_dir)


def qat_from_examples(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    hparams: QATHParams,
    *,
    train_split: str = "train",
    eval_split: str = "eval",
    checkpoint_root: str | None = None,
    run_dir: str | None = None,
) -> Any:
    """QAT of the float Model in ``float_model_dir`` (detector or classifier); its
    TensorBoard epoch scalars go to ``run_dir`` when given."""
    if model_task(float_model_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.qat_trainer import qat_from_examples as qat
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.qat_trainer import qat_from_examples as qat
    return qat(
        examples_uri,
        float_model_dir,
        output_dir,
        hparams,
        train_split=train_split,
        eval_split=eval_split,
        checkpoint_root=checkpoint_root,
        run_dir=run_dir,
    )


def convert_trained_model(
    model_dir: str,
    output_dir: str,
    options: TFLiteSetOptions,
    *,
    qat_model_dir: str | None = None,
    examples_uri: str | None = None,
) -> dict[str, Any]:
    """The TFLite set of the Model in ``model_dir`` (detector or classifier); the manifest."""
    if model_task(model_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.tflite_set import convert_trained_model as convert

        return convert(
            model_dir,
            output_dir,
            options.convert,
            qat_model_dir=qat_model_dir,
            examples_uri=examples_uri,
        )
    # deferred: each task's TensorFlow stack loads only when it runs
    from model_maker.object_detector.tflite_set import convert_trained_model as convert

    return convert(
        model_dir, output_dir, options, qat_model_dir=qat_model_dir, examples_uri=examples_uri
    )


def evaluate_artifacts(
    examples_uri: str,
    tflite_dir: str,
    output_dir: str,
    options: EvaluateOptions,
    *,
    model_dir: str | None = None,
    beam_args: Sequence[str] = (),
) -> Any:
    """Evaluate the TFLite set (and Keras model) with the evaluation of its manifest's task."""
    if manifest_task(tflite_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.evaluator import evaluate_artifacts as evaluate
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.evaluator import evaluate_artifacts as evaluate
    return evaluate(
        examples_uri, tflite_dir, output_dir, options, model_dir=model_dir, beam_args=beam_args
    )
