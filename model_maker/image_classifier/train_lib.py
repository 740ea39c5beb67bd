"""Create, train and evaluate a float image classifier (Model Maker's function names).

Datasets are batches of ``(images, labels)``: images float32 ``[B, S, S, 3]``
pixels 0..255 (the model normalises them), labels int ``[B]`` 0-based class
indices (see :mod:`~model_maker.image_classifier.dataloader`). Models output
logits; the loss is softmax cross-entropy on one-hot labels with label
smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from model_maker.core import strategy as strategy_lib
from model_maker.core.checkpoints import CheckpointState, EpochCheckpoint
from model_maker.core.divergence import StopOnNonFinite
from model_maker.core.errors import UsageError
from model_maker.core.schedules import cosine_with_warmup
from model_maker.image_classifier import model_io
from model_maker.image_classifier.hparams import HParams
from model_maker.image_classifier.image_classifier_spec import ModelSpec
from model_maker.image_classifier.model_io import load_pretrained
from model_maker.image_classifier.models.head import NORMALIZATION_NAME

#: SGD momentum of float training (Model Maker's image classifier).
MOMENTUM = 0.9

_KERNEL_ATTRS: dict[type, str] = {
    keras.layers.DepthwiseConv2D: "depthwise_regularizer",
    keras.layers.Conv2D: "kernel_regularizer",
    keras.layers.Dense: "kernel_regularizer",
}


output_layer = model_io.output_layer


def _regularizer_attr(layer: keras.layers.Layer) -> str | None:
    for kind, attr in _KERNEL_ATTRS.items():
        if isinstance(layer, kind):
            return attr
    return None


def _with_kernel_regularizer(model: keras.Model, l1: float, l2: float) -> keras.Model:
    """The same model (weights and trainable flags kept) with L1/L2 on every trainable kernel."""
    regularizer = keras.regularizers.serialize(keras.regularizers.L1L2(l1=l1, l2=l2))
    config = model.get_config()
    for entry in config["layers"]:
        layer = model.get_layer(entry["config"]["name"])
        attr = _regularizer_attr(layer)
        if attr and layer.trainable and layer.name != NORMALIZATION_NAME:
            entry["config"][attr] = regularizer
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def create_model(
    spec: ModelSpec, num_classes: int, hparams: HParams | None = None, uri: str = ""
) -> keras.Model:
    """Build the float classifier of ``spec`` for ``num_classes`` classes, ready to train.

    ``hparams`` sets the dropout, which layers train (``do_fine_tuning``: all,
    otherwise only the logits layer), the kernel regularizers of the layers
    that train, and (``seed``) the weight initialisation. ``uri`` names
    pretrained weights loaded before anything is frozen
    (:func:`model_maker.image_classifier.model_io.load_pretrained`: ``imagenet``
    for EfficientNet-Lite0..2, a Keras ``.h5`` file, a TF Hub handle); "" keeps
    the random initialisation.

    Returns:
      ``images [B, S, S, 3] float32 0..255 -> logits [B, num_classes]``.
    """
    hparams = hparams or HParams()
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    if hparams.seed is not None:
        keras.utils.set_random_seed(hparams.seed)
    model = spec.build(int(num_classes), dropout_rate=hparams.dropout_rate)
    if uri:
        load_pretrained(model, uri, spec.name)
    model_io.set_trainable(model, hparams.do_fine_tuning)
    if hparams.l1_regularizer or hparams.l2_regularizer:
        model = _with_kernel_regularizer(model, hparams.l1_regularizer, hparams.l2_regularizer)
    return model


def steps_in(dataset: tf.data.Dataset) -> int | None:
    """Batches in one pass of ``dataset``, or None when unknown or infinite."""
    count = int(tf.data.experimental.cardinality(dataset))
    return count if count >= 0 else None


def _one_hot(num_classes: int):
    def convert(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return images, tf.one_hot(tf.cast(labels, tf.int32), num_classes)

    return convert


def _peak_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The schedule's initial/peak learning rate, for messages (NaN when unknown)."""
    rate = getattr(optimizer, "_learning_rate", None) or optimizer.learning_rate
    peak = getattr(rate, "initial_learning_rate", None)
    try:
        return float(peak if peak is not None else keras.backend.get_value(rate))
    except (TypeError, ValueError):
        return float("nan")


def compile_and_fit(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    *,
    optimizer: keras.optimizers.Optimizer,
    epochs: int,
    label_smoothing: float = 0.0,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | None = None,
) -> keras.callbacks.History:
    """Compile ``model`` with softmax cross-entropy (+ top-1/top-5) and fit it.

    The float and the QAT training share this loop. ``train_data`` is passed
    through once per epoch unless ``steps_per_epoch`` is given (then it may
    repeat). With ``checkpoint_dir``, model and optimizer are saved after every
    epoch (:class:`~model_maker.core.checkpoints.CheckpointState`) and a call
    that finds a checkpoint there resumes after its last finished epoch (the
    history then holds only the epochs trained in this call).

    Runs under the strategy whose scope the caller entered (model and optimizer
    were made in it): with ``multi_worker`` every worker calls this, the
    batches are global ones split over the replicas, and only the chief writes
    ``checkpoint_dir`` while every worker resumes from the chief's checkpoint
    (see :mod:`model_maker.core.strategy`).
    """
    strategy = tf.distribute.get_strategy()
    train_data = strategy_lib.shard_by_batch(train_data, strategy)
    if validation_data is not None:
        validation_data = strategy_lib.shard_by_batch(validation_data, strategy)
    with strategy_lib.worker_dirs(strategy, checkpoint_dir) as (write_dir,):
        return _compile_and_fit(
            model,
            train_data,
            validation_data,
            optimizer=optimizer,
            epochs=epochs,
            label_smoothing=label_smoothing,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            write_dir=write_dir,
            chief=strategy_lib.is_chief(strategy),
        )


def _compile_and_fit(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    *,
    optimizer: keras.optimizers.Optimizer,
    epochs: int,
    label_smoothing: float,
    steps_per_epoch: int | None,
    callbacks: Sequence[keras.callbacks.Callback],
    checkpoint_dir: str | None,
    write_dir: str | None,
    chief: bool,
) -> keras.callbacks.History:
    """:func:`compile_and_fit` saving checkpoints to ``write_dir`` (``checkpoint_dir`` on
    the chief), resuming from ``checkpoint_dir``."""
    initial_epoch = 0
    callbacks = list(callbacks)
    if checkpoint_dir and write_dir:
        # Slots exist before the restore, so it fills them instead of deferring.
        optimizer.build(model.trainable_variables)
        state = CheckpointState(write_dir, model, optimizer)
        if chief:
            initial_epoch = min(state.restore(), epochs)
        else:  # a non-chief worker: resume from the chief's checkpoint
            strategy_lib.restore_latest(state.checkpoint, checkpoint_dir)
            initial_epoch = min(int(state.epoch.numpy()), epochs)
        # first, so that a callback failing at the end of an epoch cannot lose it
        callbacks.insert(0, EpochCheckpoint(state))
    # before the checkpoint saves a diverged epoch (batch end comes before epoch end)
    callbacks.insert(0, StopOnNonFinite("training", _peak_rate(optimizer)))
    num_classes = int(model.output_shape[-1])
    metrics: list[Any] = [keras.metrics.CategoricalAccuracy(name="top1")]
    if num_classes >= 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=metrics,
    )
    convert = _one_hot(num_classes)
    return model.fit(
        train_data.map(convert),
        validation_data=None if validation_data is None else validation_data.map(convert),
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=0,
    )


def train(
    model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    hparams: HParams,
    *,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | None = None,
) -> keras.callbacks.History:
    """Train ``model`` (from :func:`create_model`) on batches of ``(images, labels)``.

    SGD with momentum 0.9; the learning rate rises linearly to
    ``hparams.learning_rate`` over ``hparams.warmup_epochs`` and then follows a
    cosine decay to 0 at the end of ``hparams.epochs`` (the ``WarmUp``
    schedule). ``train_data`` must be batched with ``hparams.batch_size``
    images (the learning rate is meant for that batch size).

    Args:
      model: float classifier (logits output).
      train_data: training batches; one pass is one epoch.
      validation_data: evaluated at the end of every epoch, or None.
      hparams: training hyper-parameters.
      steps_per_epoch: needed when ``train_data`` has no known length (e.g. repeats).
      callbacks: Keras callbacks (TensorBoard, ...).
      checkpoint_dir: per-epoch checkpoints; a rerun resumes from the last one
        (see :func:`compile_and_fit`).

    Returns:
      The Keras ``History`` (``loss``, ``top1``[, ``top5``], ``val_*``, ``lr`` per epoch).

    Raises:
      UsageError: the number of steps per epoch is unknown.
    """
    steps = steps_per_epoch or steps_in(train_data)
    if not steps:
        raise UsageError("train: the training dataset has no known length; pass steps_per_epoch")
    schedule = cosine_with_warmup(
        hparams.learning_rate, hparams.total_steps(steps), hparams.warmup_steps(steps)
    )
    return compile_and_fit(
        model,
        train_data,
        validation_data,
        optimizer=keras.optimizers.SGD(schedule, momentum=MOMENTUM),
        epochs=hparams.epochs,
        label_smoothing=hparams.label_smoothing,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
    )


def evaluate(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float | int]:
    """Top-1, top-5 and loss of ``model`` over one pass of ``dataset``.

    Returns:
      ``top1``: fraction of images whose highest logit is the label;
      ``top5``: fraction whose label is among the 5 highest logits (only when
      the model has at least 5 classes; ties at the 5th place count as in);
      ``loss``: mean softmax cross-entropy (no label smoothing);
      ``num_images``: images evaluated.

    Raises:
      UsageError: the dataset is empty.
    """
    num_classes = int(model.output_shape[-1])
    signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
    predict = tf.function(
        lambda images: model(images, training=False), input_signature=signature, autograph=False
    )
    top1 = top5 = 0
    loss_sum = 0.0
    count = 0
    for images, labels in dataset:
        logits = tf.cast(predict(tf.cast(images, tf.float32)), tf.float32)
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        predicted = tf.argmax(logits, -1, output_type=tf.int32)
        top1 += int(tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.int32)))
        if num_classes >= 5:
            top5 += int(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 5), tf.int32)))
        loss_sum += float(
            tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        )
        count += int(labels.shape[0])
    if not count:
        raise UsageError("evaluate: the dataset holds no images")
    out: dict[str, float | int] = {"top1": top1 / count}
    if num_classes >= 5:
        out["top5"] = top5 / count
    out["loss"] = loss_sum / count
    out["num_images"] = count
    return out


def count_params(model: keras.Model) -> dict[str, int]:
    """Parameter counts of ``model``.

    Returns:
      ``total``: Keras' ``count_params()`` (BN moving statistics included, the
      convention of the published MobileNetV2/ResNet50 counts); ``learnable``:
      without the BN moving statistics (PyTorch's convention, that of the
      EfficientNet-Lite counts); ``trainable``: what trains now (``do_fine_tuning``).
    """

    def size(weights: Sequence[tf.Variable]) -> int:
        return int(sum(int(np.prod(w.shape)) for w in weights))

    moving = [w for w in model.weights if w.name.split("/")[-1].startswith("moving_")]
    total = int(model.count_params())
    return {
        "total": total,
        "learnable": total - size(moving),
        "trainable": size(model.trainable_weights),
    }
