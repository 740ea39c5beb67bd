"""One ``ModelSpec`` per classifier architecture, in the shape of Model Maker's image classifier.

A spec names the architecture, its input size and the normalisation its first
layer applies, and builds the float model. Specs are frozen values; change a
field with ``dataclasses.replace(mobilenet_v2_spec, input_image_shape=(128, 128))``.

Normalisation (``(pixel - mean_rgb) / stddev_rgb``, scalar for all three
channels, inside the model):

==========================  =====  ======  ==============================================
spec                        mean   std     why
==========================  =====  ======  ==============================================
``mobilenet_v2_spec``       127.5  127.5   [-1, 1], keras.applications' MobileNetV2 rule
``resnet_50_spec``          127.5  127.5   [-1, 1] (random init here; see note below)
``mobilenet_multi_avg_spec`` 127.5 127.5   [-1, 1] (random init here)
``efficientnet_lite*_spec`` 127.0  128.0   automl's EfficientNet-Lite, the ImageNet weights
==========================  =====  ======  ==============================================

Note: Keras' own ImageNet ResNet50 weights expect Caffe preprocessing (BGR,
per-channel mean, no scaling) and Model Garden's checkpoints per-channel
ImageNet mean/std; neither is a scalar ``Rescaling``, which is the form the
QAT rewrite (``core.qat.rewrite_for_int8``) quantizes today.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tf_keras as keras

from model_maker.core.errors import UsageError
from model_maker.core.hparams import suggest
from model_maker.image_classifier.models.efficientnet_lite import build_efficientnet_lite
from model_maker.image_classifier.models.mobilenet_multi_avg import build_mobilenet_multi_avg
from model_maker.image_classifier.models.mobilenet_v2 import build_mobilenet_v2
from model_maker.image_classifier.models.resnet50 import build_resnet50

#: ``builder(num_classes, image_size, *, dropout_rate, mean_rgb, stddev_rgb, **options)``.
Builder = Callable[..., keras.Model]


@dataclass(frozen=True)
class ModelSpec:
    """An image classifier architecture (Model Maker's ``image_classifier.ModelSpec``).

    Attributes:
      name: architecture name (``mobilenet_v2``, ``efficientnet_lite0``...).
      input_image_shape: (height, width) of the network input in pixels; the
        data pipeline resizes to it (height == width).
      mean_rgb: pixel mean subtracted by the model's first layer.
      stddev_rgb: pixel scale divided by the model's first layer.
      builder: function building the float model, see :data:`Builder`.
      builder_options: extra keyword arguments of ``builder`` (width multiplier,
        backbone name), as ``(key, value)`` pairs so the spec stays hashable.
      default_dropout_rate: the architecture's own dropout, for reference
        (``HParams.dropout_rate`` is what training uses).
    """

    name: str
    input_image_shape: tuple[int, int]
    mean_rgb: float
    stddev_rgb: float
    builder: Builder
    builder_options: tuple[tuple[str, Any], ...] = ()
    default_dropout_rate: float = 0.2

    def __post_init__(self) -> None:
        height, width = self.input_image_shape
        if height != width or height < 32:
            raise UsageError(
                f"{self.name}: input_image_shape must be square and at least 32 px, "
                f"got {self.input_image_shape}"
            )
        if not self.stddev_rgb > 0:
            raise UsageError(f"{self.name}: stddev_rgb must be positive, got {self.stddev_rgb}")

    @property
    def image_size(self) -> int:
        """Side of the square network input in pixels."""
        return int(self.input_image_shape[0])

    def build(self, num_classes: int, dropout_rate: float | None = None) -> keras.Model:
        """The float model: pixels 0..255 ``[B, S, S, 3]`` -> logits ``[B, num_classes]``."""
        return self.builder(
            num_classes,
            self.image_size,
            dropout_rate=self.default_dropout_rate if dropout_rate is None else dropout_rate,
            mean_rgb=self.mean_rgb,
            stddev_rgb=self.stddev_rgb,
            **dict(self.builder_options),
        )


mobilenet_v2_spec = ModelSpec(
    name="mobilenet_v2",
    input_image_shape=(224, 224),
    mean_rgb=127.5,
    stddev_rgb=127.5,
    builder=build_mobilenet_v2,
    builder_options=(("alpha", 1.0),),
)
resnet_50_spec = ModelSpec(
    name="resnet_50",
    input_image_shape=(224, 224),
    mean_rgb=127.5,
    stddev_rgb=127.5,
    builder=build_resnet50,
)
mobilenet_multi_avg_spec = ModelSpec(
    name="mobilenet_multi_avg",
    input_image_shape=(224, 224),
    mean_rgb=127.5,
    stddev_rgb=127.5,
    builder=build_mobilenet_multi_avg,
    builder_options=(("filter_size_scale", 1.0),),
    default_dropout_rate=0.3,
)


def _lite(index: int, size: int, dropout: float) -> ModelSpec:
    return ModelSpec(
        name=f"efficientnet_lite{index}",
        input_image_shape=(size, size),
        mean_rgb=127.0,
        stddev_rgb=128.0,
        builder=build_efficientnet_lite,
        builder_options=(("backbone_name", f"efficientnet-lite{index}"),),
        default_dropout_rate=dropout,
    )


# Input sizes and dropout of google/automl's EfficientNet-Lite table (tensorflow/tpu lite README).
efficientnet_lite0_spec = _lite(0, 224, 0.2)
efficientnet_lite1_spec = _lite(1, 240, 0.2)
efficientnet_lite2_spec = _lite(2, 260, 0.3)
efficientnet_lite3_spec = _lite(3, 280, 0.3)
efficientnet_lite4_spec = _lite(4, 300, 0.3)

#: Every spec by name.
SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        mobilenet_v2_spec,
        resnet_50_spec,
        mobilenet_multi_avg_spec,
        efficientnet_lite0_spec,
        efficientnet_lite1_spec,
        efficientnet_lite2_spec,
        efficientnet_lite3_spec,
        efficientnet_lite4_spec,
    )
}


def get_spec(name: str, image_size: int | None = None) -> ModelSpec:
    """The spec called ``name``, optionally at another input size.

    Names match without regard to case, ``-`` and ``_`` (``resnet50``,
    ``ResNet-50`` and ``resnet_50`` are the same spec).

    Raises:
      UsageError: unknown name (with the nearest one suggested) or a bad size.
    """
    by_key = {_key(spec_name): spec for spec_name, spec in SPECS.items()}
    spec = by_key.get(_key(name))
    if spec is None:
        raise UsageError(
            f"unknown image classifier {name!r}{suggest(name, SPECS)} (known: {', '.join(SPECS)})"
        )
    if image_size is not None:
        spec = dataclasses.replace(spec, input_image_shape=(int(image_size), int(image_size)))
    return spec


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")
