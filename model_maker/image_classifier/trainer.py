"""Train an image classifier on an Examples folder and write the Model layout (the Trainer's work).

:func:`train_from_examples` is the one call the Trainer component makes for
``model.task: image_classification``; a notebook can call it as well. Layout
of ``output_dir`` (the Model artifact)::

    serving/             SavedModel: images float32 [B, S, S, 3] pixels 0..255 ->
                         {"probabilities": [B, C]} (softmax inside)
    keras/config.json    task, model name, num_classes, image_size, label map, hparams
                         (see model_io.ClassifierConfig)
    keras/weights.h5     weights of the functional classifier
    metrics.json         top1 (top5 with >= 5 classes), loss, num_images on the eval split

``run_dir`` (the ModelRun artifact) receives the TensorBoard logs (``train/``,
``validation/``), ``trainer_options.json`` and, unless ``checkpoint_dir`` is
given, the per-epoch checkpoints; a stable ``checkpoint_dir`` lets a rerun
after a crash resume from the last finished epoch.

``train.strategy`` distributes the training (:mod:`model_maker.core.strategy`);
with ``multi_worker`` every worker process makes this same call, the global
batch is ``train.batch_size``, only the chief writes ``output_dir``, ``run_dir``
and the checkpoints, and a restarted job resumes from the chief's last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf
import tf_keras as keras

from model_maker.core import strategy as strategy_lib
from model_maker.core.scalar_logs import ScalarLogger
from model_maker.core.settings import to_dict
from model_maker.image_classifier import train_lib
from model_maker.image_classifier.dataloader import DataLoader, InputOptions
from model_maker.image_classifier.export import export_saved_model
from model_maker.image_classifier.image_classifier_spec import get_spec
from model_maker.image_classifier.model_io import (
    KERAS_SUBDIR,
    ClassifierConfig,
    save_trained_model,
)
from model_maker.image_classifier.options import ClassifierTrainerOptions

LOG = logging.getLogger("qatflow")

SERVING_SUBDIR = "serving"
METRICS_FILE = "metrics.json"
OPTIONS_FILE = "trainer_options.json"


def has_split(examples_uri: str, split: str) -> bool:
    """Whether the Examples folder has records for ``split``."""
    return bool(split) and bool(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))


class EpochLog(keras.callbacks.Callback):
    """One INFO line per epoch: loss, top-1 and the validation numbers."""

    def __init__(self, epochs: int, what: str) -> None:
        super().__init__()
        self.epochs = epochs
        self.what = what

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(logs.items()))
        LOG.info("%s epoch %d/%d: %s", self.what, epoch + 1, self.epochs, shown)


def train_from_examples(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: ClassifierTrainerOptions,
    checkpoint_dir: str | None = None,
) -> dict[str, float]:
    """Train on ``examples_uri``, evaluate, and write the Model layout into ``output_dir``.

    Returns the metrics on the eval split (``top1``, ``loss``, ...; {} without one).
    """
    # first: a multi-worker strategy must exist before TensorFlow runs any op
    strategy = strategy_lib.make_strategy(options.train.strategy)
    strategy_lib.check_global_batch(options.train.batch_size, strategy)
    with strategy.scope(), strategy_lib.worker_dirs(strategy, output_dir, run_dir) as dirs:
        out_dir, log_dir = dirs
        return _train(
            examples_uri,
            out_dir or output_dir,
            log_dir or run_dir,
            options,
            checkpoint_dir or os.path.join(run_dir, "checkpoints"),
        )


def _train(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: ClassifierTrainerOptions,
    checkpoint_dir: str,
) -> dict[str, float]:
    """:func:`train_from_examples` in this process's folders (the chief's real ones) and
    the strategy's scope; ``checkpoint_dir`` is the chief's."""
    tf.io.gfile.makedirs(output_dir)
    tf.io.gfile.makedirs(run_dir)
    train = DataLoader.from_examples(examples_uri, options.train_split)
    val = (
        DataLoader.from_examples(examples_uri, options.eval_split)
        if has_split(examples_uri, options.eval_split)
        else None
    )
    model_options = options.model
    spec = get_spec(model_options.name, model_options.image_size or None)
    hparams = options.hparams()
    LOG.info(
        "Trainer: %s at %d px, %d classes, %d train / %d eval images, %d epochs at batch %d, "
        "pretrained %s, %s",
        spec.name,
        spec.image_size,
        train.num_classes,
        train.size,
        val.size if val else 0,
        hparams.epochs,
        hparams.batch_size,
        model_options.uri or "no (random initialisation)",
        "whole network trains" if hparams.do_fine_tuning else "only the logits layer trains",
    )
    model = train_lib.create_model(spec, train.num_classes, hparams, uri=model_options.uri)
    inputs = InputOptions(
        image_size=spec.image_size, batch_size=hparams.batch_size, seed=hparams.seed
    )
    val_ds = val.gen_tf_dataset(inputs) if val else None
    train_lib.train(
        model,
        train.gen_tf_dataset(inputs, is_training=True),
        val_ds,
        hparams,
        callbacks=[
            ScalarLogger(run_dir),
            EpochLog(hparams.epochs, "Trainer"),
        ],
        checkpoint_dir=checkpoint_dir,
    )
    metrics: dict[str, float] = {}
    if val_ds is not None:
        metrics = {k: float(v) for k, v in train_lib.evaluate(model, val_ds).items()}
        with tf.io.gfile.GFile(os.path.join(output_dir, METRICS_FILE), "w") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True)
        LOG.info("Trainer: eval top-1 %.4f, loss %.4f", metrics["top1"], metrics["loss"])
    config = ClassifierConfig(
        model_name=spec.name,
        num_classes=train.num_classes,
        image_size=spec.image_size,
        label_map={i + 1: name for i, name in enumerate(train.index_to_label)},
        hparams=hparams.as_dict(),
    )
    save_trained_model(model, config, os.path.join(output_dir, KERAS_SUBDIR))
    export_saved_model(model, os.path.join(output_dir, SERVING_SUBDIR))
    with tf.io.gfile.GFile(os.path.join(run_dir, OPTIONS_FILE), "w") as fh:
        json.dump(to_dict(options), fh, indent=2, sort_keys=True)
    return metrics
