"""The hyper-parameters of an EfficientDet-Lite spec (``hparams``), without TensorFlow.

:data:`TRAIN_HPARAMS` holds the training, loss, input and evaluation defaults
(automl's names); :data:`ARCH_HPARAMS` the architecture fields an ``hparams``
mapping may override. :func:`check_hparams` is the rule the pipeline config
applies to ``model.hparams`` when it is loaded, so a bad key fails before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import SettingsError
from model_maker.core.hparams import HParamsError, check_keys
from model_maker.core.options import TrainOptions
from model_maker.object_detector.model_config import EfficientDetLiteConfig, get_model_config

TRAIN_HPARAMS: dict[str, Any] = {
    # classes (tflite-model-maker's default is COCO's 90; set from the data)
    "num_classes": 90,
    "label_map": None,  # 1-based id -> name; None names classes by id
    # optimiser (automl): SGD momentum, linear warm-up then cosine; rates at batch_size
    "learning_rate": TrainOptions.learning_rate,  # peak, for steps of batch_size images
    "lr_warmup_init": TrainOptions.learning_rate / 80.0,  # first warm-up step, same unit
    "lr_warmup_epoch": TrainOptions.warmup_epochs,
    "momentum": 0.9,
    "weight_decay": 4e-5,
    "clip_gradients_norm": 10.0,
    # loss (automl): focal alpha/gamma, Huber delta, box weight
    "alpha": 0.25,
    "gamma": 1.5,
    "delta": 0.1,
    "box_loss_weight": 50.0,
    # anchor matching (automl's ArgMaxMatcher)
    "match_threshold": 0.5,
    "unmatched_threshold": 0.5,
    # input pipeline
    "max_instances_per_image": 100,
    "jitter_min": 0.8,
    "jitter_max": 1.2,
    "shuffle_buffer": 256,
    # post-processing for evaluation and SavedModel export
    "nms_iou_threshold": NMSOptions.iou_threshold,
    "nms_score_threshold": NMSOptions.score_threshold,
    "max_detections_per_image": 100,
    # COCO AP on the validation data every map_freq epochs (automl's map_freq)
    "map_freq": 5,
}

#: Architecture keys that ``hparams`` may override (the ``get_model_config`` fields).
ARCH_HPARAMS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(EfficientDetLiteConfig)
    if f.name not in ("model_name", "backbone_name")
)

#: Spec hparams that the ``train`` section owns (hparam -> TrainOptions field).
TRAIN_OWNED_HPARAMS = {"learning_rate": "learning_rate", "lr_warmup_epoch": "warmup_epochs"}
#: Spec hparams that come from the data (the Examples' label map).
DATA_OWNED_HPARAMS = ("num_classes", "label_map")


def check_hparams(model_name: str, hparams: Mapping[str, Any]) -> None:
    """Apply the spec's rules to the pipeline's ``model.hparams`` before any work.

    ``learning_rate`` and ``lr_warmup_epoch`` are settings of ``train``
    (``train.learning_rate``, ``train.warmup_epochs``) and ``num_classes`` /
    ``label_map`` come from the data, so they are refused here.

    Raises:
      SettingsError: keyed ``model.hparams[.<key>]``.
    """
    for key, owner in TRAIN_OWNED_HPARAMS.items():
        if key in hparams:
            raise SettingsError(f"model.hparams.{key}", f"set train.{owner} instead")
    for key in DATA_OWNED_HPARAMS:
        if key in hparams:
            raise SettingsError(f"model.hparams.{key}", "comes from the data's label map")
    owned = {*TRAIN_OWNED_HPARAMS, *DATA_OWNED_HPARAMS}
    allowed = {
        k: v
        for k, v in {**TRAIN_HPARAMS, **{a: None for a in ARCH_HPARAMS}}.items()
        if k not in owned
    }
    try:
        check_keys(hparams, allowed, "hparams")
        get_model_config(model_name, **{k: v for k, v in hparams.items() if k in ARCH_HPARAMS})
    except HParamsError as exc:
        raise SettingsError("model.hparams", str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise SettingsError("model.hparams", f"invalid architecture value: {exc}") from None
    merged = {**TRAIN_HPARAMS, **hparams}
    if not 0 < merged["jitter_min"] <= merged["jitter_max"]:
        raise SettingsError("model.hparams", "need 0 < jitter_min <= jitter_max")
