"""ClassifierTrainerOptions: the config's model and train sections as the classifier's HParams."""

from __future__ import annotations

import pytest

from model_maker.core.errors import SettingsError
from model_maker.core.options import ModelOptions, TrainOptions
from model_maker.core.settings import build, from_json, to_json
from model_maker.image_classifier.hparams import HParams
from model_maker.image_classifier.options import MODEL_HPARAMS, ClassifierTrainerOptions

CLS = {"task": "image_classification", "name": "efficientnet_lite0"}


def test_defaults_are_the_model_maker_hparams():
    hparams = ClassifierTrainerOptions().hparams()
    defaults = HParams()
    for key in ("learning_rate", "batch_size", "epochs", "warmup_epochs", *MODEL_HPARAMS):
        assert getattr(hparams, key) == getattr(defaults, key), key


def test_train_and_model_hparams_make_the_hparams():
    options = ClassifierTrainerOptions(
        model=ModelOptions(**CLS, hparams={"do_fine_tuning": True, "dropout_rate": 0.4}),
        train=TrainOptions(epochs=3, batch_size=4, learning_rate=0.05, warmup_epochs=0.5,
                           var_freeze_expr="", seed=7),
    )  # fmt: skip
    assert options.hparams() == HParams(
        learning_rate=0.05, batch_size=4, epochs=3, warmup_epochs=0.5, seed=7,
        do_fine_tuning=True, dropout_rate=0.4,
    )  # fmt: skip
    assert from_json(ClassifierTrainerOptions, to_json(options)) == options


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": {**CLS, "hparams": {"alpha": 1}}}, "model.hparams: unknown image classifier"),
        ({"model": {**CLS, "hparams": {"l2_regularizer": -1}}}, "model.hparams.l2_regularizer"),
        ({"model": {"task": "object_detection"}}, "model.task: 'object_detection'"),
        ({"train": {"var_freeze_expr": "x"}}, "train.var_freeze_expr: a detector setting"),
        ({"train": {"var_freeze_expr": "", "moving_average_decay": 0.9}},
         "train.moving_average_decay"),
        ({"train": {"var_freeze_expr": "", "epochs": 2, "warmup_epochs": 3}},
         "train.warmup_epochs"),
        ({"train_split": "a/b"}, "train_split"),
    ],
)  # fmt: skip
def test_what_a_classifier_cannot_honour_is_refused_naming_the_key(values, message):
    with pytest.raises(SettingsError) as info:
        build(ClassifierTrainerOptions, values)
    assert message in str(info.value)
