"""The Keras training machinery of the detector: step, optimizer, LR schedule, callbacks.

The functional detector (``build_efficientdet_lite``) stays the model that is
saved, exported and later wrapped by TFMOT; :class:`DetectorTrainer` is a thin
``keras.Model`` around it that only adds a custom ``train_step`` /
``test_step`` so ``fit()`` drives the loop with its callbacks.

Choices (EfficientDet defaults, google/automl ``train_lib.py``; see
NOTES-MODEL.md):

* SGD with momentum 0.9, gradient clipping by global norm 10;
* L2 weight decay ``weight_decay * sum(l2_loss(kernel))`` added to the loss
  for convolution/dense kernels only (not batch-norm or biases), as automl;
* learning rate linear warm-up from ``lr_warmup_init`` then cosine decay to 0;
* variables whose name matches ``var_freeze_expr`` (``re.match``, as
  tflite-model-maker) get no gradient;
* EMA of weights through the tf-keras optimizer's own ``use_ema`` /
  ``ema_momentum``; ``fit()`` writes the averages into the model at the end.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.checkpoints import (  # noqa: F401 - the trainers' checkpoints
    CheckpointState,
    EpochCheckpoint,
)
from model_maker.core.scalar_logs import ScalarLogger  # noqa: F401 - the trainers' logs

LOG = logging.getLogger("qatflow")

LossFn = Callable[[Mapping[str, tf.Tensor], tf.Tensor, tf.Tensor], Mapping[str, tf.Tensor]]

_KERNEL_RE = re.compile(r".*kernel:0$")


def frozen(variable: tf.Variable, var_freeze_expr: str) -> bool:
    """Whether ``variable`` is frozen by ``var_freeze_expr`` (``re.match`` on its name)."""
    return bool(var_freeze_expr) and re.match(var_freeze_expr, variable.name) is not None


class DetectorTrainer(keras.Model):
    """``fit()``-able wrapper: detector forward, detection loss + L2, gradients on unfrozen vars.

    Args:
      detector: the functional model, images -> (class_logits, box_encodings).
      loss_fn: ``(labels, class_logits, box_encodings) -> {"cls_loss", "box_loss",
        "det_loss"}``; ``det_loss`` is optimised.
      weight_decay: L2 factor on kernels.
      var_freeze_expr: regex of variable names left untouched ("" trains all).
    """

    def __init__(
        self,
        detector: keras.Model,
        loss_fn: LossFn,
        weight_decay: float = 4e-5,
        var_freeze_expr: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=kwargs.pop("name", "detector_trainer"), **kwargs)
        self.detector = detector
        self.loss_fn = loss_fn
        self.weight_decay = float(weight_decay)
        self.var_freeze_expr = var_freeze_expr
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "det_loss", "cls_loss", "box_loss", "reg_l2_loss")
        }

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self._trackers.values())

    def train_variables(self) -> list[tf.Variable]:
        """Trainable variables of the detector not matched by ``var_freeze_expr``."""
        return [v for v in self.detector.trainable_variables if not frozen(v, self.var_freeze_expr)]

    def call(self, inputs: tf.Tensor, training: bool | None = None):
        return self.detector(inputs, training=training)

    def _reg_l2_loss(self, variables: list[tf.Variable]) -> tf.Tensor:
        kernels = [v for v in variables if _KERNEL_RE.match(v.name)]
        if not kernels or self.weight_decay == 0:
            return tf.constant(0.0)
        return self.weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])

    def _update(self, losses: Mapping[str, tf.Tensor], reg: tf.Tensor, total: tf.Tensor):
        self._trackers["loss"].update_state(total)
        self._trackers["reg_l2_loss"].update_state(reg)
        for key in ("det_loss", "cls_loss", "box_loss"):
            self._trackers[key].update_state(losses[key])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    # Traced without AutoGraph: every layer's control flow is on Python values, and
    # converting each non-Keras layer's call (TFMOT's wrappers) costs seconds per trace.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        images, labels = data
        variables = self.train_variables()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            class_logits, box_encodings = self.detector(images, training=True)
            losses = self.loss_fn(labels, class_logits, box_encodings)
            reg = self._reg_l2_loss(variables)
            total = losses["det_loss"] + reg
            # gradients are summed over replicas by the optimizer
            scaled = total / replicas
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self._update(losses, reg, total)

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        images, labels = data
        class_logits, box_encodings = self.detector(images, training=False)
        losses = self.loss_fn(labels, class_logits, box_encodings)
        reg = self._reg_l2_loss(self.train_variables())
        return self._update(losses, reg, losses["det_loss"] + reg)


def learning_rate_schedule(
    peak: float, warmup_init: float, warmup_steps: int, total_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from ``warmup_init`` to ``peak`` over ``warmup_steps``, then cosine to 0.

    This is automl's ``CosineLrSchedule``; Keras' ``CosineDecay`` with
    ``warmup_target`` computes exactly that.
    """
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=warmup_init,
        decay_steps=max(int(total_steps) - int(warmup_steps), 1),
        warmup_target=peak,
        warmup_steps=int(warmup_steps),
    )


def build_optimizer(
    learning_rate: keras.optimizers.schedules.LearningRateSchedule | float,
    momentum: float = 0.9,
    clip_gradients_norm: float = 10.0,
    moving_average_decay: float = 0.0,
) -> keras.optimizers.Optimizer:
    """SGD + momentum with global-norm clipping and, when ``moving_average_decay > 0``, EMA."""
    return keras.optimizers.SGD(
        learning_rate=learning_rate,
        momentum=momentum,
        global_clipnorm=clip_gradients_norm if clip_gradients_norm > 0 else None,
        use_ema=moving_average_decay > 0,
        ema_momentum=moving_average_decay if moving_average_decay > 0 else 0.99,
    )


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate of the optimizer's last step (step 0's before any step)."""
    lr = optimizer.learning_rate  # tf-keras: the rate of the last applied step
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(tf.convert_to_tensor(lr))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds ``learning_rate`` (of the epoch's last step) to the epoch logs."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class Profiler(keras.callbacks.Callback):
    """Profiles training batches ``start``..``stop`` into ``log_dir`` (TF's profiler)."""

    def __init__(self, log_dir: str, start: int = 2, stop: int = 3):
        super().__init__()
        self.log_dir, self.start, self.stop = log_dir, start, stop
        self._batch = 0
        self._running = False

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._batch += 1
        if self._batch == self.start and not self._running:
            tf.profiler.experimental.start(self.log_dir)
            self._running = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._running and self._batch >= self.stop:
            tf.profiler.experimental.stop()
            self._running = False

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._running:
            tf.profiler.experimental.stop()
            self._running = False


class ApplyEMA:
    """Context manager: the model holds the EMA weights inside, its own weights after.

    Does nothing when the optimizer has no EMA; the optimizer must be built.
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, variables: list[tf.Variable]):
        self.optimizer = optimizer
        self.variables = variables
        self._backup: list[Any] = []

    def __enter__(self) -> ApplyEMA:
        if getattr(self.optimizer, "use_ema", False):
            self._backup = [v.numpy() for v in self.variables]
            self.optimizer.finalize_variable_values(self.variables)
        return self

    def __exit__(self, *exc: Any) -> None:
        for variable, value in zip(self.variables, self._backup, strict=False):
            variable.assign(value)
        self._backup = []


class CocoEvalCallback(keras.callbacks.Callback):
    """Every ``every`` epochs (and at the last one) adds ``val_<metric>`` COCO AP to the logs.

    Runs with the EMA weights when EMA is on. TensorBoard, placed after this
    callback, writes them under ``validation/``.

    Args:
      evaluate_fn: ``() -> metrics dict`` evaluating the detector.
      every: evaluation period in epochs.
      total_epochs: the last epoch always gets evaluated.
      keys: metric names copied into the logs.
    """

    #: The metrics logged by default.
    KEYS = ("AP", "AP50", "AP75", "ARmax100")

    def __init__(
        self,
        evaluate_fn: Callable[[], Mapping[str, float]],
        every: int,
        total_epochs: int,
        keys: tuple[str, ...] = KEYS,
    ):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.every = max(int(every), 1)
        self.total_epochs = total_epochs
        self.keys = keys
        self.history: list[tuple[int, dict[str, float]]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        done = epoch + 1
        if done % self.every and done != self.total_epochs:
            return
        trainer = self.model
        with ApplyEMA(trainer.optimizer, trainer.detector.trainable_variables):
            metrics = dict(self.evaluate_fn())
        self.history.append((done, metrics))
        LOG.info("epoch %d: %s", done, ", ".join(f"{k} {metrics[k]:.4f}" for k in self.keys))
        if logs is not None:
            for key in self.keys:
                logs[f"val_{key}"] = metrics[key]
