"""The classifier Trainer's settings, composed from the shared settings classes (no TensorFlow).

:class:`ClassifierTrainerOptions` is what the Trainer component passes to
:func:`model_maker.image_classifier.trainer.train_from_examples` for
``model.task: image_classification``: the config's ``model`` and ``train``
sections and the splits. The Model Maker ``HParams`` of the classifier are
made from them (:meth:`ClassifierTrainerOptions.hparams`): ``train`` gives
learning rate, batch size, epochs, warm-up and seed; ``model.hparams`` may
set the classifier-only fields (:data:`MODEL_HPARAMS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from model_maker.core.errors import SettingsError
from model_maker.core.hparams import HParamsError, check_keys
from model_maker.core.options import IMAGE_CLASSIFICATION, ModelOptions, TrainOptions
from model_maker.core.settings import Settings, check_name
from model_maker.image_classifier.hparams import HParams

#: ``HParams`` fields that ``model.hparams`` may set (the rest come from ``train``).
MODEL_HPARAMS = (
    "dropout_rate",
    "label_smoothing",
    "do_fine_tuning",
    "l1_regularizer",
    "l2_regularizer",
)

#: The smallest input side the classifiers take (the data pipeline's floor).
MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class ClassifierTrainerOptions(Settings):
    """What the Trainer is asked to do for an image classifier.

    Attributes:
      model: which classifier (``name``, pretrained ``uri``, ``hparams`` from
        :data:`MODEL_HPARAMS`, ``image_size``; 0 is the spec's published size).
      train: epochs, batch size, peak learning rate, warm-up epochs and seed.
        ``var_freeze_expr`` and ``moving_average_decay`` are detector settings:
        they must stay "" and 0 (freeze a classifier's backbone with
        ``model.hparams.do_fine_tuning: false``).
      train_split: split trained on.
      eval_split: split evaluated on after training ("" or a missing split skips it).
    """

    model: ModelOptions = ModelOptions(task=IMAGE_CLASSIFICATION, name="efficientnet_lite0")
    train: TrainOptions = TrainOptions(
        epochs=HParams.epochs,
        batch_size=HParams.batch_size,
        learning_rate=HParams.learning_rate,
        warmup_epochs=HParams.warmup_epochs,
        var_freeze_expr="",
    )
    train_split: str = "train"
    eval_split: str = "eval"

    def validate(self) -> None:
        check_name("train_split", self.train_split)
        if self.eval_split:
            check_name("eval_split", self.eval_split)
        check_classifier(self.model, self.train)
        try:
            self.hparams()  # every value in range (e.g. warmup_epochs <= epochs)
        except SettingsError as exc:
            section = "model.hparams" if exc.key in MODEL_HPARAMS else "train"
            raise SettingsError(f"{section}.{exc.key}", exc.reason) from None

    def hparams(self) -> HParams:
        """The Model Maker ``HParams`` these options train with."""
        train = self.train
        return HParams(
            learning_rate=train.learning_rate,
            batch_size=train.batch_size,
            epochs=train.epochs,
            warmup_epochs=train.warmup_epochs,
            seed=train.seed,
            **{key: self.model.hparams[key] for key in MODEL_HPARAMS if key in self.model.hparams},
        )


def check_classifier(model: ModelOptions, train: TrainOptions) -> None:
    """Raise :class:`SettingsError` for settings an image classifier cannot honour."""
    if model.task != IMAGE_CLASSIFICATION:
        raise SettingsError(
            "model.task", f"{model.task!r}: this trainer trains {IMAGE_CLASSIFICATION} models"
        )
    try:
        check_keys(dict(model.hparams), dict.fromkeys(MODEL_HPARAMS), "image classifier hparams")
    except HParamsError as exc:
        raise SettingsError("model.hparams", str(exc)) from None
    if model.image_size and model.image_size < MIN_IMAGE_SIZE:
        raise SettingsError(
            "model.image_size", f"{model.image_size}: classifiers take {MIN_IMAGE_SIZE} px or more"
        )
    if train.var_freeze_expr:
        raise SettingsError(
            "train.var_freeze_expr",
            "a detector setting; a classifier freezes its backbone with "
            'model.hparams.do_fine_tuning: false (set var_freeze_expr to "")',
        )
    if train.moving_average_decay:
        raise SettingsError(
            "train.moving_average_decay",
            "the classifier trainer keeps no weight EMA; set it to 0",
        )
