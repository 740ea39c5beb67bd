"""HParams: defaults, strict validation, strict construction from plain data."""

from __future__ import annotations

import math

import pytest

from model_maker.core.errors import UsageError
from model_maker.image_classifier.hparams import HParams


def test_defaults():
    hp = HParams()
    assert (hp.learning_rate, hp.batch_size, hp.epochs) == (0.01, 32, 10)
    assert (hp.dropout_rate, hp.label_smoothing, hp.do_fine_tuning) == (0.2, 0.1, False)
    assert (hp.l1_regularizer, hp.l2_regularizer, hp.warmup_epochs, hp.seed) == (
        0.0,
        1e-4,
        1.0,
        None,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("learning_rate", 0.0, "learning_rate"),
        ("learning_rate", -0.1, "learning_rate"),
        ("learning_rate", math.nan, "learning_rate: must be a finite number"),
        ("learning_rate", math.inf, "learning_rate: must be a finite number"),
        ("learning_rate", "0.1", "learning_rate: expected a number"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", 2.5, "batch_size: expected an integer"),
        ("batch_size", True, "batch_size: expected an integer"),
        ("epochs", 0, "epochs"),
        ("dropout_rate", 1.0, "dropout_rate"),
        ("dropout_rate", -0.01, "dropout_rate"),
        ("label_smoothing", 1.0, "label_smoothing"),
        ("label_smoothing", -math.inf, "label_smoothing: must be a finite number"),
        ("do_fine_tuning", 1, "do_fine_tuning"),
        ("l1_regularizer", -1e-6, "l1_regularizer"),
        ("l2_regularizer", math.nan, "l2_regularizer"),
        ("warmup_epochs", -1.0, "warmup_epochs"),
        ("warmup_epochs", 11.0, "warmup_epochs"),  # more than the 10 epochs
        ("seed", -1, "seed"),
        ("seed", 1.5, "seed: expected an integer"),
    ],
)
def test_rejects_bad_values(field, value, message):
    with pytest.raises(UsageError, match=message):
        HParams(**{field: value})


def test_accepts_edges():
    hp = HParams(dropout_rate=0.0, label_smoothing=0.0, warmup_epochs=10.0, seed=0, epochs=10)
    assert hp.warmup_steps(7) == 70 and hp.total_steps(7) == 70
    assert HParams(warmup_epochs=0.5).warmup_steps(5) == 2  # round(2.5) -> 2 (banker's)
    assert HParams(warmup_epochs=0.0).warmup_steps(100) == 0


def test_from_dict_is_strict_and_round_trips():
    hp = HParams.from_dict({"learning_rate": 0.05, "epochs": 3, "do_fine_tuning": True})
    assert hp == HParams(learning_rate=0.05, epochs=3, do_fine_tuning=True)
    assert HParams.from_dict(hp.as_dict()) == hp
    with pytest.raises(UsageError, match="did you mean 'label_smoothing'"):
        HParams.from_dict({"label_smothing": 0.1})
    with pytest.raises(UsageError, match="batch_size"):
        HParams.from_dict({"batch_size": "lots"})


def test_is_frozen():
    with pytest.raises(AttributeError):
        HParams().epochs = 3  # type: ignore[misc]
