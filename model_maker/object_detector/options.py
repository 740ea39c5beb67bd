"""The detector stages' settings, composed from the library's settings classes (no TensorFlow).

:class:`TrainerOptions` is what the Trainer (and so :func:`train_from_examples`)
takes, :class:`TFLiteSetOptions` what the TFLiteConverter takes. Each field
is a settings class defined once elsewhere (the config sections); these
classes only group them per stage, so a component carries one JSON property.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_maker.core.convert_options import ConvertOptions
from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import SettingsError
from model_maker.core.options import OBJECT_DETECTION, ModelOptions, TrainOptions
from model_maker.core.settings import Settings, check_name
from model_maker.object_detector.hparams import check_hparams


@dataclass(frozen=True)
class TrainerOptions(Settings):
    """What the Trainer is asked to do: the config's ``model``, ``train`` and
    ``postprocess`` sections, and which splits to use.

    Attributes:
      model: which model (task, name, pretrained ``uri``, ``hparams``, image size).
      train: float training (epochs, batch size, peak learning rate, ...).
      postprocess: detection post-processing of the serving export
        (``max_detections`` of the TFLite-style export).
      train_split: split trained on.
      eval_split: split evaluated on (skipped when the Examples have no such split).
    """

    model: ModelOptions = ModelOptions()
    train: TrainOptions = TrainOptions()
    postprocess: NMSOptions = NMSOptions()
    train_split: str = "train"
    eval_split: str = "eval"

    def validate(self) -> None:
        check_name("train_split", self.train_split)
        if self.eval_split:
            check_name("eval_split", self.eval_split)
        check_task(self.model)
        check_hparams(self.model.name, self.model.hparams)


def check_task(model: ModelOptions) -> None:
    """Raise :class:`SettingsError` when ``model`` is not a detector this package trains."""
    if model.task != OBJECT_DETECTION:
        raise SettingsError(
            "model.task", f"{model.task!r}: this trainer trains {OBJECT_DETECTION} models"
        )


@dataclass(frozen=True)
class TFLiteSetOptions(Settings):
    """The TFLiteConverter's settings: the config's ``convert`` and ``postprocess`` sections.

    Attributes:
      convert: variants, int8 input type, calibration samples, NMS inside or not.
      postprocess: N and thresholds of the post-processing op.
    """

    convert: ConvertOptions = ConvertOptions()
    postprocess: NMSOptions = NMSOptions()
