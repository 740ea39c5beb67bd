"""Quantization-aware fine-tuning of a trained classifier from Examples (the QATTrainer's work).

:func:`qat_from_examples` is the one call the QATTrainer component makes for a
classifier's Model artifact. Layout of ``output_dir`` (the QAT Model artifact)::

    keras/config.json    the float model's config (model_io.ClassifierConfig)
    keras/qat_weights.h5 weights of the fake-quant model (rebuilt by load_qat_model:
                         the float model, quantize_classifier, these weights)
    serving/             SavedModel of the fake-quant model (probabilities, softmax inside)
    qat.json             hparams, optimizer steps, seconds, history, the fake-quant
                         model's metrics and the float model's on the eval split

Under ``qat.strategy`` the fake-quant model is made and calibrated outside the
strategy and rebuilt inside it with the chief's weights, as the detector's
(:mod:`model_maker.object_detector.qat_trainer`); with ``multi_worker`` every
worker runs the whole call and only the chief writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core import strategy as strategy_lib
from model_maker.core.checkpoints import qat_checkpoint_dir
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.scalar_logs import ScalarLogger, copy_logs
from model_maker.image_classifier import train_lib
from model_maker.image_classifier.dataloader import DataLoader, InputOptions
from model_maker.image_classifier.export import export_saved_model
from model_maker.image_classifier.model_io import (
    CONFIG_FILE,
    KERAS_SUBDIR,
    ClassifierConfig,
    build_model,
    load_trained_model,
    read_config,
)
from model_maker.image_classifier.qat import (
    calibrate,
    quantize_classifier,
    rebuild_qat_classifier,
    train_qat,
)
from model_maker.image_classifier.trainer import SERVING_SUBDIR, EpochLog, has_split

LOG = logging.getLogger("qatflow")

QAT_WEIGHTS_FILE = "qat_weights.h5"
#: Training batches that set the fake-quant ranges before fine-tuning.
CALIBRATION_BATCHES = 8
QAT_REPORT_FILE = "qat.json"


@dataclass
class QATResult:
    """What QAT produced: the fake-quant model and its numbers."""

    model: keras.Model
    hparams: QATHParams
    steps: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    float_metrics: dict[str, float] = field(default_factory=dict)


def load_qat_model(model_dir: str) -> tuple[keras.Model, ClassifierConfig]:
    """Rebuild the fake-quant classifier saved by :func:`qat_from_examples`."""
    config = read_config(model_dir)
    qat_model = quantize_classifier(build_model(config))
    qat_model.load_weights(os.path.join(model_dir, KERAS_SUBDIR, QAT_WEIGHTS_FILE))
    return qat_model, config


def _metrics(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    return {k: float(v) for k, v in train_lib.evaluate(model, dataset).items()}


def qat_from_examples(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    hparams: QATHParams | None = None,
    *,
    train_split: str = "train",
    eval_split: str = "eval",
    export_serving: bool = True,
    checkpoint_dir: str | None = None,
    checkpoint_root: str | None = None,
    run_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> QATResult:
    """QAT of the Trainer's classifier (``float_model_dir``) on ``examples_uri``.

    ``checkpoint_dir`` makes QAT resumable (per-epoch checkpoints; a rerun goes
    on after the last one); ``checkpoint_root`` is a stable folder holding one
    such sub-folder per float model and hparams (:func:`qat_checkpoint_dir`).
    The label smoothing is the float training's. ``run_dir`` (the ModelRun
    artifact) receives the Trainer's TensorBoard epoch scalars (``train/`` and
    ``validation/``; written beside the checkpoints when there are some, so a
    resumed run's curves hold the epochs before the restart too).

    ``strategy`` is the one ``hparams.strategy`` names, when the caller built it
    already (it must exist before TensorFlow runs anything); ``batch_size`` is the
    global batch, and with ``multi_worker`` only the chief writes ``output_dir``,
    ``run_dir`` and the checkpoints.
    """
    hparams = hparams or QATHParams()
    # first: a multi-worker strategy must exist before TensorFlow runs any op
    strategy = strategy or strategy_lib.make_strategy(hparams.strategy)
    strategy_lib.check_global_batch(hparams.batch_size, strategy)
    with strategy_lib.worker_dirs(strategy, output_dir, run_dir) as (out_dir, log_dir):
        return _qat_from_examples(
            examples_uri,
            float_model_dir,
            out_dir or output_dir,
            hparams,
            train_split=train_split,
            eval_split=eval_split,
            export_serving=export_serving,
            checkpoint_dir=checkpoint_dir,
            checkpoint_root=checkpoint_root,
            run_dir=log_dir,
            strategy=strategy,
        )


def _qat_from_examples(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    hparams: QATHParams,
    *,
    train_split: str,
    eval_split: str,
    export_serving: bool,
    checkpoint_dir: str | None,
    checkpoint_root: str | None,
    run_dir: str | None,
    strategy: tf.distribute.Strategy,
) -> QATResult:
    """:func:`qat_from_examples` in this process's folders (the chief's real ones)."""
    if checkpoint_root and not checkpoint_dir:
        checkpoint_dir = qat_checkpoint_dir(checkpoint_root, float_model_dir, hparams)
    float_model, config = load_trained_model(float_model_dir)
    train = DataLoader.from_examples(examples_uri, train_split)
    if train.num_classes != config.num_classes:
        raise ValueError(
            f"the Examples have {train.num_classes} classes, the float model {config.num_classes}"
        )
    val = (
        DataLoader.from_examples(examples_uri, eval_split)
        if has_split(examples_uri, eval_split)
        else None
    )
    seed = config.hparams.get("seed")
    inputs = InputOptions(image_size=config.image_size, batch_size=hparams.batch_size, seed=seed)
    steps_per_epoch = max(math.ceil(train.size / hparams.batch_size), 1)
    start = time.perf_counter()
    qat_model = quantize_classifier(float_model)  # outside the strategy: see the module doc
    train_ds = train.gen_tf_dataset(inputs, is_training=True)
    if not (checkpoint_dir and tf.train.latest_checkpoint(checkpoint_dir)):
        calibrate(qat_model, train_ds, CALIBRATION_BATCHES)  # a checkpoint holds its ranges
    qat_model = strategy_lib.distributed(
        qat_model, strategy, lambda: rebuild_qat_classifier(qat_model)
    )
    LOG.info(
        "QAT of %s: %d epochs x %d steps, batch %d, lr %g decaying x%g every %d steps",
        config.model_name,
        hparams.epochs,
        steps_per_epoch,
        hparams.batch_size,
        hparams.learning_rate,
        hparams.decay_rate,
        hparams.decay_steps,
    )
    val_ds = val.gen_tf_dataset(inputs) if val else None
    chief = strategy_lib.is_chief(strategy)
    # TensorBoard scalars beside the checkpoints (the chief's) when there are some
    scalars = (checkpoint_dir if chief else None) or run_dir
    with strategy.scope():
        history = train_qat(
            qat_model,
            train_ds,
            val_ds,
            hparams,
            label_smoothing=float(config.hparams.get("label_smoothing", 0.0)),
            calibration_batches=0,  # calibrated above
            callbacks=[
                *([ScalarLogger(scalars)] if run_dir else []),
                EpochLog(hparams.epochs, "QAT"),
            ],
            checkpoint_dir=checkpoint_dir,
        )
    if run_dir and checkpoint_dir and chief:
        copy_logs(checkpoint_dir, run_dir)
    seconds = time.perf_counter() - start
    result = QATResult(
        model=qat_model,
        hparams=hparams,
        steps=int(qat_model.optimizer.iterations.numpy()),
        seconds=seconds,
        history={k: [float(v) for v in values] for k, values in history.history.items()},
    )
    if val_ds is not None:
        result.metrics = _metrics(qat_model, val_ds)
        result.float_metrics = _metrics(float_model, val_ds)
        LOG.info(
            "QAT done in %.1f s: fake-quant top-1 %.4f, float top-1 %.4f on %s",
            seconds,
            result.metrics["top1"],
            result.float_metrics["top1"],
            eval_split,
        )
    # saved and exported from a plain copy (see strategy_lib.undistributed)
    result.model = strategy_lib.undistributed(
        qat_model, strategy, lambda: rebuild_qat_classifier(qat_model)
    )
    save_qat_model(result, config, float_model_dir, output_dir)
    if export_serving:
        export_saved_model(result.model, os.path.join(output_dir, SERVING_SUBDIR))
    return result


def save_qat_model(
    result: QATResult, config: ClassifierConfig, float_model_dir: str, directory: str
) -> str:
    """Write the layout in the module doc into ``directory``; return it."""
    keras_dir = os.path.join(directory, KERAS_SUBDIR)
    tf.io.gfile.makedirs(keras_dir)
    with tf.io.gfile.GFile(os.path.join(keras_dir, CONFIG_FILE), "w") as fh:
        fh.write(config.to_json())
    result.model.save_weights(os.path.join(keras_dir, QAT_WEIGHTS_FILE), save_format="h5")
    report: dict[str, Any] = {
        "task": config.task,
        "float_model": float_model_dir,
        "hparams": result.hparams.as_dict(),
        "steps": result.steps,
        "seconds": result.seconds,
        "history": result.history,
        "metrics": result.metrics,
        "float_metrics": result.float_metrics,
    }
    with tf.io.gfile.GFile(os.path.join(directory, QAT_REPORT_FILE), "w") as fh:
        fh.write(json.dumps(report, indent=2, sort_keys=True))
    return directory
