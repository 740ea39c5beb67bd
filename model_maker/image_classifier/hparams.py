"""Training hyper-parameters of the image classifier (Model Maker's ``HParams``)."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model_maker.core.errors import SettingsError
from model_maker.core.settings import Settings, build, check_range


@dataclass(frozen=True)
class HParams(Settings):
    """How the float classifier trains; every value is checked when the object is made.

    Optimiser: SGD with momentum 0.9. Learning rate: linear warm-up from 0 to
    ``learning_rate`` over ``warmup_epochs``, then cosine decay to 0 at the end
    of ``epochs`` (:func:`model_maker.core.schedules.cosine_with_warmup`).

    Attributes:
      learning_rate: the peak learning rate (reached at the end of the warm-up)
        for steps of ``batch_size`` images (> 0). It is used as given, NOT
        rescaled by ``batch_size / 256`` as some Model Maker versions did: when
        you change ``batch_size``, scale it yourself (linearly, as a rule of thumb).
      batch_size: images per training step (>= 1).
      epochs: passes over the training split (>= 1).
      dropout_rate: dropout before the logits layer, in [0, 1).
      label_smoothing: label smoothing of the cross-entropy, in [0, 1).
      do_fine_tuning: train the whole network; if false only the logits layer
        trains and every other layer (batch norms included) is frozen, which is
        meant for a pretrained backbone.
      l1_regularizer: L1 penalty on the kernels of the layers that train (>= 0).
      l2_regularizer: L2 penalty on the kernels of the layers that train (>= 0).
      warmup_epochs: length of the linear warm-up in epochs (fractions allowed;
        0 disables it; at most ``epochs``).
      seed: seed of weight initialisation, shuffling and augmentation (>= 0);
        None for nondeterministic runs.
    """

    learning_rate: float = 0.01
    batch_size: int = 32
    epochs: int = 10
    dropout_rate: float = 0.2
    label_smoothing: float = 0.1
    do_fine_tuning: bool = False
    l1_regularizer: float = 0.0
    l2_regularizer: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int | None = None

    def validate(self) -> None:
        for key in (
            "learning_rate",
            "dropout_rate",
            "label_smoothing",
            "l1_regularizer",
            "l2_regularizer",
            "warmup_epochs",
        ):
            _number(key, getattr(self, key))
        for key in ("batch_size", "epochs"):
            _integer(key, getattr(self, key))
            check_range(key, getattr(self, key), 1)
        if not isinstance(self.do_fine_tuning, bool):
            raise SettingsError(
                "do_fine_tuning", f"expected true or false, got {self.do_fine_tuning!r}"
            )
        if self.seed is not None:
            _integer("seed", self.seed)
            check_range("seed", self.seed, 0)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("dropout_rate", self.dropout_rate, 0.0, 1.0, high_open=True)
        check_range("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_range("l1_regularizer", self.l1_regularizer, 0.0)
        check_range("l2_regularizer", self.l2_regularizer, 0.0)
        check_range("warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HParams:
        """Build from a mapping of (some of) the fields, strictly.

        Raises:
          SettingsError: an unknown key (with the nearest field suggested), a
            value of the wrong type, or a value out of range.
        """
        return build(cls, values)

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """Warm-up length in steps."""
        return int(round(self.warmup_epochs * steps_per_epoch))

    def total_steps(self, steps_per_epoch: int) -> int:
        """Training length in steps."""
        return int(self.epochs * steps_per_epoch)


def _number(key: str, value: Any) -> None:
    # Settings.__post_init__ has already rejected NaN and infinities in floats.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(key, f"expected a number, got {value!r}")


def _integer(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingsError(key, f"expected an integer, got {value!r}")
