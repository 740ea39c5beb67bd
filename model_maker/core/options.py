"""The settings both tasks share: which model (:class:`ModelOptions`) and how it trains
(:class:`TrainOptions`).

These classes are the only definition of these settings: the pipeline
config's ``model`` and ``train`` sections are these classes, the Trainer
component carries them as JSON, and the task libraries read them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model_maker.core.errors import SettingsError
from model_maker.core.hparams import HParamsError, parse_hparams
from model_maker.core.pretrained_cache import (
    check_offline,
    imagenet_backbone_name,
    is_imagenet_uri,
)
from model_maker.core.settings import Settings, check_choice, check_range

OBJECT_DETECTION = "object_detection"
IMAGE_CLASSIFICATION = "image_classification"
TASKS = (OBJECT_DETECTION, IMAGE_CLASSIFICATION)
DETECTOR_MODELS = tuple(f"efficientdet_lite{i}" for i in range(5))
#: The image_classifier package's spec names (a test keeps the two lists equal).
CLASSIFIER_MODELS = (
    "mobilenet_v2",
    "resnet_50",
    "mobilenet_multi_avg",
    *(f"efficientnet_lite{i}" for i in range(5)),
)
MODELS = {OBJECT_DETECTION: DETECTOR_MODELS, IMAGE_CLASSIFICATION: CLASSIFIER_MODELS}
#: ``train.strategy`` values (built by :mod:`model_maker.core.strategy`).
DEFAULT_STRATEGY = "default"
#: ``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG`` cluster.
MULTI_WORKER = "multi_worker"
STRATEGIES = (DEFAULT_STRATEGY, "gpus", "tpu", MULTI_WORKER)

#: Detectors: levels 6 and 7 round odd sizes up (320 -> 5, 3), as the published
#: 320/384/448/512/640 need; other steps were never tested.
DETECTOR_SIZE_STEP = 64
#: Largest ``model.image_size`` (both tasks). The published models take 224..640
#: pixels; 2048 leaves room for small objects on big images, while memory grows
#: with the square of the size (at 64000 pixels the first feature map alone is
#: over 100 GB per image), so anything larger can only fail in training or on
#: the device.
MAX_IMAGE_SIZE = 2048


@dataclass(frozen=True)
class ModelOptions(Settings):
    """Which model is trained.

    Attributes:
      task: object_detection or image_classification.
      name: efficientdet_lite0..4 (detection) or a classifier name.
      uri: pretrained weights. "imagenet" loads the offline ImageNet
        EfficientNet-Lite backbone (Lite0..2 only; run `make pretrained` once,
        cache in $QATFLOW_PRETRAINED_DIR or ~/.cache/qatflow/pretrained); a TF
        Hub handle, SavedModel or trained-model folder loads those weights;
        empty trains from random initialisation.
      hparams: model hyper-parameter overrides: a mapping, a "k=v,k2=v2" string
        or a YAML file path (the three forms of the Model Maker API); always
        held as the parsed mapping, so a resolved config records the values;
        the task's spec checks the keys (``pipeline.config`` does so on load).
      image_size: input size in pixels, at most 2048 (memory grows with its
        square; the published sizes are 224..640); 0 uses the model's published size.
    """

    task: str = OBJECT_DETECTION
    name: str = "efficientdet_lite0"
    uri: str = ""
    hparams: Mapping[str, Any] | str = field(default_factory=dict)
    image_size: int = 0

    def __post_init__(self) -> None:
        try:
            hparams = parse_hparams(self.hparams)
        except HParamsError as exc:
            raise SettingsError("hparams", str(exc)) from None
        object.__setattr__(self, "hparams", hparams)
        super().__post_init__()

    def validate(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("name", self.name, MODELS[self.task])
        check_range("image_size", self.image_size, 0, MAX_IMAGE_SIZE)
        if self.task == OBJECT_DETECTION and self.image_size % DETECTOR_SIZE_STEP:
            raise SettingsError(
                "image_size",
                f"{self.image_size} must be a multiple of {DETECTOR_SIZE_STEP} "
                "(the published sizes are 320, 384, 448, 512, 640), or 0 for the model's "
                "own size",
            )
        try:
            self.offline_backbone()
        except ValueError as exc:
            raise SettingsError("uri", str(exc)) from None

    def offline_backbone(self) -> str:
        """The offline ImageNet backbone ``uri`` loads (``efficientnet-liteN``), or "".

        Raises:
          ValueError: the uri asks for ImageNet weights the model's backbone has none of.
        """
        if not is_imagenet_uri(self.uri):
            return ""
        # Detectors: the backbone of efficientdet_liteN; classifiers: the model itself.
        backbone = self.name.replace("efficientdet", "efficientnet")
        return check_offline(imagenet_backbone_name(self.uri, backbone))


@dataclass(frozen=True)
class TrainOptions(Settings):
    """Float training.

    Attributes:
      epochs: training epochs.
      batch_size: images per step.
      learning_rate: the peak learning rate, reached after warm-up, for steps of
        ``batch_size`` images (not per 64 images: what you set is what the
        optimiser uses at the peak). Scale it with the batch size yourself.
      warmup_epochs: linear warm-up length in epochs.
      moving_average_decay: EMA decay of the weights in [0, 1); 0 disables EMA.
      var_freeze_expr: regex of variable names kept frozen ("" trains all).
      steps_per_execution: steps per compiled call.
      seed: random seed (tf_random_seed of the Model Maker API).
      strategy: how training is distributed: "default" (this process's one
        device), "gpus" (MirroredStrategy over this machine's GPUs), "tpu"
        (TPUStrategy) or "multi_worker" (MultiWorkerMirroredStrategy over the
        cluster in the TF_CONFIG environment variable; ``batch_size`` stays the
        global batch and must split evenly over the workers; only the chief
        writes checkpoints, logs and artifacts). Used by both tasks' float
        Trainer; the QATTrainer has its own, ``qat.strategy``.
    """

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 0.08
    warmup_epochs: float = 1.0
    moving_average_decay: float = 0.0
    var_freeze_expr: str = "(efficientnet|fpn_cells|resample_p6)"
    steps_per_execution: int = 1
    seed: int = 111111
    strategy: str = DEFAULT_STRATEGY

    def validate(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_range("epochs", self.epochs, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("warmup_epochs", self.warmup_epochs, 0.0)
        check_range("moving_average_decay", self.moving_average_decay, 0.0, 1.0, high_open=True)
        check_range("steps_per_execution", self.steps_per_execution, 1)
        try:
            re.compile(self.var_freeze_expr)
        except re.error as exc:
            raise SettingsError("var_freeze_expr", f"not a regular expression: {exc}") from None
