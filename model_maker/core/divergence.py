"""Training that diverged stops with one clear line instead of writing garbage on.

A learning rate too high for the batch size can blow the loss up to inf/NaN;
Keras would train on, save non-finite weights, and the TFLite converter
would crash on them (a segmentation fault, no message). :class:`StopOnNonFinite`
ends ``fit`` at the first non-finite loss (or, at an epoch's end, the first
non-finite weight: NaN gradients can poison the weights while the loss,
computed before the update, still looks finite) with :class:`TrainingDiverged`,
and :func:`check_finite_weights` refuses a model that holds one.
"""

from __future__ import annotations

import math

import numpy as np
import tf_keras as keras

from model_maker.core.errors import QatflowError


class TrainingDiverged(QatflowError):
    """The loss or a weight became infinite or NaN (exit code 1)."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises :class:`TrainingDiverged` at the first batch whose loss is not finite.

    Args:
      what: the training named in the message (``"float training"``, ``"QAT"``).
      learning_rate: the peak learning rate, quoted in the message.
    """

    def __init__(self, what: str, learning_rate: float) -> None:
        super().__init__()
        self.what = what
        self.learning_rate = learning_rate
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"{self.what} diverged: loss {float(loss)} at epoch {self._epoch + 1}, "
                f"step {batch + 1}; lower the learning rate (now {self.learning_rate:g}) "
                "or raise the batch size"
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # NaN gradients can poison weights while the loss (computed before the
        # update) still looks finite; one pass over the weights per epoch catches it.
        check_finite_weights(self.model, f"the model after {self.what} epoch {epoch + 1}")


def check_finite_weights(model: keras.Model, what: str) -> None:
    """Raise :class:`TrainingDiverged` naming the first weights of ``model`` that are not finite."""
    bad = [w.name for w in model.weights if not np.all(np.isfinite(w.numpy()))]
    if bad:
        raise TrainingDiverged(
            f"{what} holds non-finite weights ({len(bad)} tensors, first {', '.join(bad[:3])}): "
            "its training diverged; train it again with a lower learning rate"
        )
