"""Learning-rate schedules: linear warm-up in front of any Keras decay schedule.

``WarmUp`` is registered for Keras serialization (package ``qatflow``), so a
model compiled with an optimizer using it saves and reloads without
``custom_objects`` in the ``.keras`` and SavedModel formats (legacy ``.h5``
files look classes up by their bare name: pass ``custom_objects={"WarmUp": WarmUp}``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="qatflow")
class WarmUp(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``initial_learning_rate``, then ``decay_schedule_fn``.

    ``lr(step) = initial_learning_rate * step / warmup_steps`` for
    ``step < warmup_steps``, else ``decay_schedule_fn(step)``: the decay sees
    the global step, not the steps since the warm-up ended. That is MediaPipe
    Model Maker's ``WarmUp`` (``core/utils/model_util.py``), so a recipe moved
    from it gets the same rates; wrap the decay in an offset yourself for the
    other convention.

    Args:
      initial_learning_rate: learning rate reached at the end of the warm-up.
      decay_schedule_fn: a ``LearningRateSchedule`` (serializable) or a plain
        callable of the step (then ``get_config`` is not available).
      warmup_steps: warm-up length in steps (0 disables it).
      name: optional name scope.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_schedule_fn: keras.optimizers.schedules.LearningRateSchedule | Any,
        warmup_steps: int,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_schedule_fn = decay_schedule_fn
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step: Any) -> tf.Tensor:
        with tf.name_scope(self.name or "WarmUp"):
            step = tf.cast(step, tf.float32)
            decayed = tf.cast(self.decay_schedule_fn(step), tf.float32)
            if self.warmup_steps == 0:
                return decayed
            warm = self.initial_learning_rate * step / float(self.warmup_steps)
            return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        if not isinstance(self.decay_schedule_fn, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError(
                "WarmUp.get_config needs decay_schedule_fn to be a keras LearningRateSchedule, "
                f"got {type(self.decay_schedule_fn).__name__}"
            )
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_schedule_fn": keras.optimizers.schedules.serialize(self.decay_schedule_fn),
            "warmup_steps": self.warmup_steps,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmUp:
        config = dict(config)
        decay = config["decay_schedule_fn"]
        if isinstance(decay, dict):
            config["decay_schedule_fn"] = keras.optimizers.schedules.deserialize(decay)
        return cls(**config)


def cosine_with_warmup(
    learning_rate: float, total_steps: int, warmup_steps: int, alpha: float = 0.0
) -> WarmUp:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``alpha * learning_rate``
    at ``total_steps``: ``WarmUp`` around ``CosineDecay(learning_rate, total_steps)``,
    MediaPipe's image-classifier schedule (the cosine spans the warm-up steps too, so
    right after the warm-up the rate is ``cos``-decayed by ``warmup_steps / total_steps``)."""
    cosine = keras.optimizers.schedules.CosineDecay(
        learning_rate, max(int(total_steps), 1), alpha=alpha
    )
    return WarmUp(learning_rate, cosine, warmup_steps)
