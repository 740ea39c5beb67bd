"""``QATHParams``: the settings of quantization-aware fine-tuning, without TensorFlow.

The pipeline config's ``qat`` section is this class (plus ``enabled``), so a
config loads and validates in well under a second; :mod:`model_maker.core.qat`
re-exports it beside the TFMOT machinery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model_maker.core.options import DEFAULT_STRATEGY, STRATEGIES
from model_maker.core.settings import Settings, check_choice, check_range


@dataclass(frozen=True)
class QATHParams(Settings):
    """Hyper-parameters of quantization-aware fine-tuning (Model Maker's ``QATHParams``).

    The learning rate follows
    ``ExponentialDecay(learning_rate, decay_steps, decay_rate)`` (not staircase).

    Attributes:
      learning_rate: initial learning rate of the exponential decay, for steps of
        ``batch_size`` images (> 0).
      batch_size: images per step.
      epochs: fine-tuning epochs.
      decay_steps: steps per decay period.
      decay_rate: multiplicative decay per period, in (0, 1].
      strategy: how QAT is distributed, as ``train.strategy`` for the float
        training (``default``, ``gpus``, ``tpu``, ``multi_worker``; see
        :mod:`model_maker.core.strategy`). With ``multi_worker``, ``batch_size``
        is the global batch, every worker runs the whole QATTrainer call and
        only the chief writes. Not part of the checkpoint folder's key: a
        job resumed on another strategy goes on from the same checkpoints.
    """

    learning_rate: float = 0.03
    batch_size: int = 32
    epochs: int = 10
    decay_steps: int = 231
    decay_rate: float = 0.96
    strategy: str = DEFAULT_STRATEGY

    def validate(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        for key in ("batch_size", "epochs", "decay_steps"):
            check_range(key, getattr(self, key), 1)
        check_range("decay_rate", self.decay_rate, 0.0, 1.0, low_open=True)

    def learning_rate_schedule(self) -> Any:
        """``ExponentialDecay(learning_rate, decay_steps, decay_rate)`` (tf-keras)."""
        import tf_keras as keras  # deferred: settings load without TensorFlow

        return keras.optimizers.schedules.ExponentialDecay(
            self.learning_rate, self.decay_steps, self.decay_rate
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QATHParams:
        """Build from a mapping holding (a subset of) the fields; other keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})
