"""Quantization-aware fine-tuning of a trained EfficientDet-Lite, and its saved form.

:func:`train_qat` wraps the float detector with fake quant
(:func:`~model_maker.object_detector.qat_model.quantize_efficientdet`), fine-tunes
it with :class:`~model_maker.core.qat.QATHParams` (ranges
calibrated on a few train images first, then SGD with momentum,
``ExponentialDecay(learning_rate, decay_steps, decay_rate)``, every variable
trained: the fixed input normalisation is two ``Rescaling`` layers whose scale
and offset are constants, see :func:`~model_maker.core.qat.rewrite_for_int8`)
through the float trainer's own step
(:class:`~model_maker.object_detector.train_lib.DetectorTrainer`, same loss,
clipping and weight decay), then evaluates the fake-quant model on the eval
split with the spec's COCO evaluation and logs it, so a collapse shows before
conversion.

Under ``qat.strategy`` (:mod:`model_maker.core.strategy`) the fake-quant model is
made and calibrated outside the strategy, then rebuilt inside it holding the
chief's weights (:func:`~model_maker.core.strategy.distributed`): TFMOT's rewrite
builds several intermediate models, and under ``multi_worker`` every variable
they create is a collective that all workers must join in the same order (it
hung). With ``multi_worker`` every worker runs the whole call; only the chief
writes checkpoints, logs and the Model artifact.

Saved layout (the Trainer's ``keras/`` folder plus the QAT graph)::

    <dir>/keras/config.json      TrainedModelConfig of the float architecture (as the Trainer)
    <dir>/keras/qat_model.json   the QAT Keras model's ``to_json()``
    <dir>/keras/qat_weights.h5   its weights (kernels, batch norms and quantizer ranges)
    <dir>/serving/               SavedModel of the QAT model (the Trainer's serving signature)
    <dir>/qat.json               {"hparams": QATHParams, "metrics": fake-quant COCO metrics,
                                  "float_metrics": ..., "history": per-epoch losses}

:func:`load_qat_model` rebuilds the model from ``qat_model.json`` inside
TFMOT's ``quantize_scope`` and loads the weights; it converts with
``TFLiteConverter.from_keras_model`` (``Optimize.DEFAULT``) to int8.
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
from model_maker.core.options import TrainOptions
from model_maker.core.qat import (
    QATHParams,
    calibrate_fake_quant,
    calibration_batch_size,
    qat_model_from_config,
)
from model_maker.core.scalar_logs import ScalarLogger, copy_logs, log_scalars
from model_maker.object_detector import train_lib
from model_maker.object_detector.dataloader import SPLIT_PREFIX, DataLoader
from model_maker.object_detector.efficientdet_spec import (
    ARCH_HPARAMS,
    TRAIN_HPARAMS,
    EfficientDetSpec,
)
from model_maker.object_detector.model_io import (
    CONFIG_FILE,
    KERAS_SUBDIR,
    TrainedModelConfig,
    load_trained_model,
)
from model_maker.object_detector.qat_model import (
    QAT_MODEL_FILE,
    QAT_WEIGHTS_FILE,
    load_qat_model,
    qat_custom_objects,
    quantize_efficientdet,
)

LOG = logging.getLogger("qatflow")

__all__ = ["QATResult", "load_qat_model", "qat_from_examples", "save_qat_model", "train_qat"]

QAT_REPORT_FILE = "qat.json"
SERVING_SUBDIR = "serving"


@dataclass
class QATResult:
    """What :func:`train_qat` produced.

    Attributes:
      model: the fine-tuned fake-quant model.
      hparams: the QAT hyper-parameters used.
      steps: optimizer steps taken.
      seconds: wall time of quantize + fine-tune (evaluation excluded).
      history: per-epoch mean losses (``loss``, ``det_loss``, ``cls_loss``, ...).
      metrics: COCO metrics of the fake-quant model on the eval split ({} without one).
      float_metrics: COCO metrics of the float model on the same split, when asked.
    """

    model: keras.Model
    hparams: QATHParams
    steps: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    float_metrics: dict[str, float] = field(default_factory=dict)


def qat_optimizer(hparams: QATHParams, spec: EfficientDetSpec) -> keras.optimizers.Optimizer:
    """SGD + momentum over ``ExponentialDecay`` (the spec's momentum and gradient clipping)."""
    return train_lib.build_optimizer(
        hparams.learning_rate_schedule(),
        momentum=float(spec.hparams["momentum"]),
        clip_gradients_norm=float(spec.hparams["clip_gradients_norm"]),
    )


def train_qat(
    spec: EfficientDetSpec,
    float_model: keras.Model,
    train_files: list[str],
    hparams: QATHParams | None = None,
    *,
    train_size: int | None = None,
    steps_per_epoch: int | None = None,
    eval_files: list[str] | None = None,
    eval_json_file: str | None = None,
    evaluate_float: bool = False,
    calibration_images: int = 64,
    checkpoint_dir: str | None = None,
    log_dir: str | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> QATResult:
    """Quantization-aware fine-tuning of ``float_model`` on ``train_files``.

    Args:
      spec: the spec the float model was trained with (loss, input pipeline, eval).
      float_model: the trained functional detector (left untouched).
      train_files: TFRecord files of the train split (Examples contract).
      hparams: QAT hyper-parameters; defaults to ``QATHParams()``.
      train_size: images in the train split; sets ``steps_per_epoch`` to
        ``ceil(train_size / batch_size)`` when that is not given.
      steps_per_epoch: optimizer steps per epoch (overrides ``train_size``).
      eval_files: TFRecord files of the eval split; the fake-quant model is
        evaluated on them after fine-tuning (COCO AP, logged).
      eval_json_file: COCO ground truth of the eval split (original pixels).
      evaluate_float: also evaluate ``float_model`` on the eval split.
      calibration_images: train images (without augmentation) that set the
        fake-quant ranges before fine-tuning (see ``calibrate_fake_quant``).
      checkpoint_dir: when given, the QAT model (weights and quantizer
        ranges), the optimizer and the epoch counter are saved there after
        every epoch, and a call that finds a checkpoint resumes after its last
        finished epoch (a crashed run loses at most one epoch). The folder
        must belong to this float model and these hparams.
      log_dir: when given, the Trainer's TensorBoard epoch scalars (losses and
        learning rate under ``train/``) are written there, and the fake-quant
        model's COCO AP at the last epoch under ``validation/``.
      strategy: the distribution strategy (the one in force when None); see the
        module doc. ``hparams.batch_size`` is the global batch. With
        ``multi_worker``, every worker calls this and only the chief writes
        ``checkpoint_dir`` and ``log_dir``; all resume from the chief's checkpoint.

    Returns:
      :class:`QATResult`; its model's variables are the strategy's.
    """
    hparams = hparams or QATHParams()
    strategy = strategy or tf.distribute.get_strategy()
    strategy_lib.check_global_batch(hparams.batch_size, strategy)
    if steps_per_epoch is None:
        if not train_size:
            raise ValueError("give train_size or steps_per_epoch")
        steps_per_epoch = math.ceil(train_size / hparams.batch_size)
    steps_per_epoch = max(int(steps_per_epoch), 1)
    start = time.perf_counter()
    qat_model = quantize_efficientdet(float_model)  # outside the strategy: see the module doc
    resuming = bool(checkpoint_dir) and bool(tf.train.latest_checkpoint(checkpoint_dir))
    if not resuming:  # a checkpoint holds the ranges training moved on to
        calib_batch = calibration_batch_size(spec.image_size, calibration_images)
        calib = spec.make_dataset(train_files, batch_size=calib_batch, is_training=False)
        batches = max(math.ceil(calibration_images / calib_batch), 1)
        calibrate_fake_quant(qat_model, (images for images, _ in calib.take(batches)))
    qat_model = strategy_lib.distributed(qat_model, strategy, _rebuild(qat_model))
    with strategy.scope():
        optimizer = qat_optimizer(hparams, spec)
        if checkpoint_dir:
            # Slots exist before the restore, so it fills them instead of deferring.
            optimizer.build(qat_model.trainable_variables)
        trainer = train_lib.DetectorTrainer(
            qat_model,
            spec._loss(),
            weight_decay=float(spec.hparams["weight_decay"]),
        )
        trainer.compile(optimizer=optimizer)
    dataset = strategy_lib.shard_by_batch(
        spec.make_dataset(train_files, batch_size=hparams.batch_size, is_training=True), strategy
    )
    with strategy_lib.worker_dirs(strategy, checkpoint_dir, log_dir) as (ckpt_dir, logs_dir):
        history = _fit(
            trainer,
            optimizer,
            dataset,
            hparams,
            steps_per_epoch,
            strategy,
            checkpoint_dir,
            ckpt_dir,
            logs_dir,
            float_model.name,
        )
        seconds = time.perf_counter() - start
        result = QATResult(
            model=qat_model,
            hparams=hparams,
            steps=int(optimizer.iterations.numpy()),
            seconds=seconds,
            history={k: [float(v) for v in values] for k, values in history.history.items()},
        )
        if result.history.get("loss"):
            LOG.info("QAT done in %.1f s, final loss %.4f", seconds, result.history["loss"][-1])
        else:
            LOG.info(
                "QAT: all %d epochs were in the checkpoint, nothing left to train", hparams.epochs
            )
        if eval_files:
            _evaluate_after(
                spec, result, float_model, eval_files, eval_json_file, evaluate_float, logs_dir
            )
    return result


def _rebuild(qat_model: keras.Model) -> Any:
    """A builder of ``qat_model``'s architecture with new variables (in the scope in force).

    The config is read when the builder runs: under the default strategy it never
    does, and ``get_config`` of a fake-quant detector costs a tenth of a second.
    """
    return lambda: qat_model_from_config(qat_model.get_config(), qat_custom_objects())


def _fit(
    trainer: train_lib.DetectorTrainer,
    optimizer: keras.optimizers.Optimizer,
    dataset: tf.data.Dataset,
    hparams: QATHParams,
    steps_per_epoch: int,
    strategy: tf.distribute.Strategy,
    checkpoint_dir: str | None,
    write_dir: str | None,
    log_dir: str | None,
    name: str,
) -> keras.callbacks.History:
    """``fit`` from the last checkpoint (the chief's), saving into ``write_dir``."""
    state = None
    initial_epoch = 0
    if checkpoint_dir and write_dir:
        state = train_lib.CheckpointState(write_dir, trainer.detector, optimizer)
        if strategy_lib.is_chief(strategy):
            initial_epoch = state.restore()
        else:  # a non-chief worker: resume from the chief's checkpoint
            strategy_lib.restore_latest(state.checkpoint, checkpoint_dir)
            initial_epoch = int(state.epoch.numpy())
        initial_epoch = min(initial_epoch, hparams.epochs)
    LOG.info(
        "QAT of %s: epochs %d..%d x %d steps, batch %d, lr %g decaying x%g every %d steps",
        name,
        initial_epoch + 1,
        hparams.epochs,
        steps_per_epoch,
        hparams.batch_size,
        hparams.learning_rate,
        hparams.decay_rate,
        hparams.decay_steps,
    )
    return trainer.fit(
        dataset.repeat(),
        epochs=hparams.epochs,
        steps_per_epoch=steps_per_epoch,
        initial_epoch=initial_epoch,
        callbacks=_callbacks(state, log_dir),
        verbose=0,
    )


def _evaluate_after(
    spec: EfficientDetSpec,
    result: QATResult,
    float_model: keras.Model,
    eval_files: list[str],
    eval_json_file: str | None,
    evaluate_float: bool,
    log_dir: str | None,
) -> None:
    """The fake-quant (and float) model's COCO metrics on the eval split, into ``result``."""
    eval_batch = min(result.hparams.batch_size, 8)
    eval_ds = spec.make_dataset(eval_files, batch_size=eval_batch, is_training=False)
    result.metrics = evaluate(spec, result.model, eval_ds, eval_json_file)
    LOG.info(
        "fake-quant model on the eval split: AP %.4f, AP50 %.4f",
        result.metrics["AP"],
        result.metrics["AP50"],
    )
    if log_dir:
        keys = train_lib.CocoEvalCallback.KEYS
        log_scalars(log_dir, result.hparams.epochs, {f"val_{k}": result.metrics[k] for k in keys})
    if evaluate_float:
        result.float_metrics = evaluate(spec, float_model, eval_ds, eval_json_file)
        LOG.info(
            "float model on the eval split: AP %.4f, AP50 %.4f",
            result.float_metrics["AP"],
            result.float_metrics["AP50"],
        )


def _callbacks(
    state: train_lib.CheckpointState | None, log_dir: str | None
) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    if log_dir:
        # Scalars before the checkpoint: an epoch whose checkpoint exists has its logs.
        callbacks += [train_lib.LearningRateLogger(), ScalarLogger(log_dir)]
    if state:
        callbacks.append(train_lib.EpochCheckpoint(state))
    return callbacks


def evaluate(
    spec: EfficientDetSpec,
    model: keras.Model,
    dataset: tf.data.Dataset,
    json_file: str | None = None,
) -> dict[str, float]:
    """COCO metrics of ``model`` (float or fake-quant) on ``dataset`` (the spec's evaluation)."""
    return {k: float(v) for k, v in spec.evaluate(model, dataset, None, json_file).items()}


def save_qat_model(result: QATResult, trained_config: TrainedModelConfig, directory: str) -> str:
    """Write the layout in the module doc into ``directory``; return it."""
    keras_dir = os.path.join(directory, KERAS_SUBDIR)
    tf.io.gfile.makedirs(keras_dir)
    with tf.io.gfile.GFile(os.path.join(keras_dir, CONFIG_FILE), "w") as fh:
        fh.write(trained_config.to_json())
    with tf.io.gfile.GFile(os.path.join(keras_dir, QAT_MODEL_FILE), "w") as fh:
        fh.write(result.model.to_json())
    result.model.save_weights(os.path.join(keras_dir, QAT_WEIGHTS_FILE), save_format="h5")
    report = {
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


def read_qat_report(model_dir: str) -> dict[str, Any]:
    """The ``qat.json`` report (hparams, steps, history, metrics) of a saved QAT model."""
    with tf.io.gfile.GFile(os.path.join(model_dir, QAT_REPORT_FILE)) as fh:
        return json.loads(fh.read())


def spec_for(
    config: TrainedModelConfig,
    seed: int = TrainOptions.seed,
    strategy: tf.distribute.Strategy | None = None,
) -> EfficientDetSpec:
    """The spec (loss, input pipeline, evaluation) of a trained model's saved config."""
    hparams = {k: v for k, v in config.hparams.items() if k in TRAIN_HPARAMS or k in ARCH_HPARAMS}
    hparams["num_classes"] = config.num_classes
    hparams["label_map"] = dict(config.label_map)
    return EfficientDetSpec(
        model_name=config.model_name,
        uri="",
        hparams=hparams,
        var_freeze_expr="",
        tf_random_seed=seed,
        strategy=strategy,
    )


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
    """QAT of the Trainer's model in ``float_model_dir`` on ``examples_uri``; write ``output_dir``.

    The one call the QATTrainer component makes. The eval split, when the
    Examples have it, is used to log and save the fake-quant model's COCO AP
    (``qat.json``). ``checkpoint_dir`` makes QAT resumable (see :func:`train_qat`);
    ``checkpoint_root`` is a stable folder holding one such sub-folder per float
    model and hparams (:func:`qat_checkpoint_dir`), so a new float model never
    resumes from another's QAT. ``run_dir`` (the ModelRun artifact) receives the
    TensorBoard logs (written beside the checkpoints when there are some, so a
    resumed run's curves hold the epochs before the restart too).

    ``strategy`` is the one ``hparams.strategy`` names, when the caller built it
    already (it must exist before TensorFlow runs anything); with
    ``multi_worker`` only the chief writes ``output_dir`` and ``run_dir``.
    """
    hparams = hparams or QATHParams()
    # first: a multi-worker strategy must exist before TensorFlow runs any op
    strategy = strategy or strategy_lib.make_strategy(hparams.strategy)
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
    spec = spec_for(config, strategy=strategy)
    train = DataLoader.from_examples(examples_uri, train_split)
    has_eval = bool(eval_split) and tf.io.gfile.isdir(
        os.path.join(examples_uri, f"{SPLIT_PREFIX}{eval_split}")
    )
    val = DataLoader.from_examples(examples_uri, eval_split) if has_eval else None
    result = train_qat(
        spec,
        float_model,
        list(train.files),
        hparams,
        train_size=train.size,
        eval_files=list(val.files) if val else None,
        eval_json_file=(val.annotations_json or None) if val else None,
        checkpoint_dir=checkpoint_dir,
        log_dir=(checkpoint_dir or run_dir) if run_dir else None,
        strategy=strategy,
    )
    if run_dir and checkpoint_dir and strategy_lib.is_chief(strategy):
        copy_logs(checkpoint_dir, run_dir)
    # saved and exported from a plain copy (see strategy_lib.undistributed)
    result.model = strategy_lib.undistributed(result.model, strategy, _rebuild(result.model))
    save_qat_model(result, config, output_dir)
    if export_serving:
        spec.export_saved_model(result.model, os.path.join(output_dir, SERVING_SUBDIR))
    return result
