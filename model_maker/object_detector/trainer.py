"""Train EfficientDet-Lite on an Examples folder and write the Model layout (the Trainer's work).

:func:`train_from_examples` is the one call the TFX Trainer component makes;
a notebook can call it just as well. Layout of ``output_dir`` (the Model
artifact)::

    serving/             SavedModel (export_saved_model, pre_mode 'infer', post_mode 'global'):
                         uint8 images [B, H, W, 3] -> boxes (normalised yxyx), classes
                         (0-based), scores, num_detections
    keras/config.json    model name, num_classes, image_size, hparams, label map,
                         architecture (see model_io.TrainedModelConfig)
    keras/weights.h5     weights of the functional detector
    metrics.json         COCO AP dict on the eval split (when there is one)

``load_trained_model(output_dir)`` rebuilds the functional Keras model.
``run_dir`` (the ModelRun artifact) receives the TensorBoard logs
(``train/``, ``validation/``) and, unless ``checkpoint_dir`` is given, the
per-epoch checkpoints; a stable ``checkpoint_dir`` lets a rerun after a crash
resume from the last finished epoch.

``train.strategy: multi_worker`` runs this same call in every worker process
(``TF_CONFIG`` names the cluster): the global batch is ``train.batch_size``,
only the chief writes ``output_dir``, ``run_dir`` and the checkpoints (the
other workers write to a temporary folder that is removed), and a restarted
job resumes every worker from the chief's last checkpoint. See
:mod:`model_maker.core.strategy`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping

import tensorflow as tf

from model_maker.core import strategy as strategy_lib
from model_maker.core.scalar_logs import copy_logs
from model_maker.core.settings import to_dict
from model_maker.object_detector.dataloader import SPLIT_PREFIX, DataLoader
from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
from model_maker.object_detector.model import build_efficientdet_lite
from model_maker.object_detector.model_io import KERAS_SUBDIR, save_trained_model
from model_maker.object_detector.options import TrainerOptions

LOG = logging.getLogger("qatflow")

SERVING_SUBDIR = "serving"
METRICS_FILE = "metrics.json"


def build_spec(
    options: TrainerOptions,
    label_map: Mapping[int, str],
    model_dir: str,
    strategy: tf.distribute.Strategy | None = None,
) -> EfficientDetSpec:
    """The spec for ``options`` with the classes of ``label_map``; ``strategy`` is the
    one ``options.train.strategy`` names, when already built."""
    model, train = options.model, options.train
    hparams = dict(model.hparams)
    hparams.update(
        num_classes=max(label_map),
        label_map={int(k): v for k, v in label_map.items()},
        learning_rate=train.learning_rate,
        lr_warmup_epoch=train.warmup_epochs,
    )
    if model.image_size:
        hparams["image_size"] = model.image_size
    return EfficientDetSpec(
        model_name=model.name,
        uri=model.uri,
        hparams=hparams,
        model_dir=model_dir,
        epochs=train.epochs,
        batch_size=train.batch_size,
        steps_per_execution=train.steps_per_execution,
        moving_average_decay=train.moving_average_decay,
        var_freeze_expr=train.var_freeze_expr,
        tflite_max_detections=options.postprocess.max_detections,
        tf_random_seed=train.seed,
        strategy=strategy or train.strategy,
        verbose=2 if LOG.isEnabledFor(logging.INFO) else 0,
    )


def _has_split(examples_uri: str, split: str) -> bool:
    return tf.io.gfile.isdir(os.path.join(examples_uri, f"{SPLIT_PREFIX}{split}"))


def train_from_examples(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: TrainerOptions,
    checkpoint_dir: str | None = None,
) -> dict[str, float]:
    """Train on ``examples_uri``, evaluate, and write the Model layout into ``output_dir``.

    Returns the COCO AP dict on the eval split ({} without an eval split).
    """
    # first: a multi-worker strategy must exist before TensorFlow runs any op
    strategy = strategy_lib.make_strategy(options.train.strategy)
    strategy_lib.check_global_batch(options.train.batch_size, strategy)
    with strategy_lib.worker_dirs(strategy, output_dir, run_dir) as (out_dir, log_dir):
        return _train(
            examples_uri,
            out_dir or output_dir,
            log_dir or run_dir,
            options,
            checkpoint_dir or run_dir,
            strategy,
            copy_logs_from=checkpoint_dir if strategy_lib.is_chief(strategy) else None,
        )


def _train(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: TrainerOptions,
    model_dir: str,
    strategy: tf.distribute.Strategy,
    copy_logs_from: str | None,
) -> dict[str, float]:
    """:func:`train_from_examples` in this process's folders (the chief's real ones)."""
    tf.io.gfile.makedirs(output_dir)
    tf.io.gfile.makedirs(run_dir)
    train = DataLoader.from_examples(examples_uri, options.train_split)
    val = (
        DataLoader.from_examples(examples_uri, options.eval_split)
        if options.eval_split and _has_split(examples_uri, options.eval_split)
        else None
    )
    spec = build_spec(options, train.label_map, model_dir, strategy)
    LOG.info(
        "Trainer: %s, %d classes, %d train / %s eval images, %d epochs at batch %d",
        spec.model_config.model_name,
        spec.num_classes,
        train.size,
        val.size if val else 0,
        options.train.epochs,
        options.train.batch_size,
    )
    steps_per_epoch = max(math.ceil(train.size / options.train.batch_size), 1)
    eval_batch = min(options.train.batch_size, 8)
    model = spec.create_model()
    val_ds = val.gen_dataset(spec, batch_size=eval_batch) if val else None
    val_json = val.annotations_json if val and val.annotations_json else None
    spec.train(
        model,
        train.gen_dataset(spec, is_training=True),
        steps_per_epoch,
        val_ds,
        None,
        val_json_file=val_json,
    )
    if copy_logs_from:
        copy_logs(copy_logs_from, run_dir)  # the logs belong to the run, checkpoints or not
    metrics: dict[str, float] = {}
    if val_ds is not None:
        metrics = spec.evaluate(model, val_ds, None, val_json)
        with tf.io.gfile.GFile(os.path.join(output_dir, METRICS_FILE), "w") as fh:
            json.dump(metrics, fh, indent=2, sort_keys=True)
        LOG.info("Trainer: eval AP %.4f, AP50 %.4f", metrics["AP"], metrics["AP50"])
    model = strategy_lib.undistributed(
        model, strategy, lambda: build_efficientdet_lite(spec.model_config, spec.num_classes)
    )
    save_trained_model(model, spec.trained_config(), os.path.join(output_dir, KERAS_SUBDIR))
    spec.export_saved_model(model, os.path.join(output_dir, SERVING_SUBDIR))
    with tf.io.gfile.GFile(os.path.join(run_dir, "trainer_options.json"), "w") as fh:
        json.dump(to_dict(options), fh, indent=2, sort_keys=True)
    return metrics
