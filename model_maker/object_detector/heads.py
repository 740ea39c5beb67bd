"""Class and box prediction heads of EfficientDet-Lite.

Each head is ``repeats`` separable 3x3 convs followed by a separable
prediction conv. The conv kernels are shared across levels (one layer object
applied to every level), each level has its own batch norms. A separable conv
is written as ``DepthwiseConv2D`` (no bias) + 1x1 ``Conv2D`` (with bias): the
same parameters as ``SeparableConv2D``, but conv + BN + ``ReLU(6.0)`` is a
pattern TFMOT fuses, and TFLite runs the two ops anyway.

Per-level outputs are [B, H, W, anchors * channels] with channel
``a * channels + k`` for anchor ``a`` at that position, which is the anchor
order of :class:`~model_maker.object_detector.anchors.Anchors`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf
import tf_keras as keras

CLASS_PRIOR_PROBABILITY = 0.01


def class_bias_init_value(prior: float = CLASS_PRIOR_PROBABILITY) -> float:
    """Bias making every initial class score ``prior`` after the sigmoid: -log((1-p)/p)."""
    return -math.log((1.0 - prior) / prior)


class _SeparableConv:
    """A shared depthwise + pointwise conv pair (two Keras layers)."""

    def __init__(
        self, filters: int, name: str, bias_initializer: keras.initializers.Initializer
    ) -> None:
        self.depthwise = keras.layers.DepthwiseConv2D(
            3,
            padding="same",
            use_bias=False,
            depthwise_initializer=keras.initializers.VarianceScaling(),
            name=f"{name}_depthwise",
        )
        self.pointwise = keras.layers.Conv2D(
            filters,
            1,
            padding="same",
            kernel_initializer=keras.initializers.VarianceScaling(),
            bias_initializer=bias_initializer,
            name=f"{name}_pointwise",
        )

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.pointwise(self.depthwise(x))


def build_head(
    features: Sequence[tf.Tensor],
    levels: Sequence[int],
    output_channels: int,
    num_filters: int,
    repeats: int,
    name: str,
    bias_initializer: keras.initializers.Initializer,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
) -> list[tf.Tensor]:
    """Apply one shared-kernel head to the per-level ``features``; one output map per level."""
    if len(features) != len(levels):
        raise ValueError(f"{name}: {len(features)} feature maps for levels {list(levels)}")
    convs = [
        _SeparableConv(num_filters, f"{name}_conv{i}", keras.initializers.Zeros())
        for i in range(repeats)
    ]
    predict = _SeparableConv(output_channels, f"{name}_predict", bias_initializer)
    outputs = []
    for x, level in zip(features, levels, strict=True):
        for i, conv in enumerate(convs):
            x = conv(x)
            x = keras.layers.BatchNormalization(
                momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_conv{i}_bn_p{level}"
            )(x)
            x = keras.layers.ReLU(6.0, name=f"{name}_conv{i}_relu6_p{level}")(x)
        outputs.append(predict(x))
    return outputs


def build_class_net(
    features: Sequence[tf.Tensor],
    levels: Sequence[int],
    num_classes: int,
    num_anchors: int,
    num_filters: int,
    repeats: int,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    name: str = "class_net",
) -> list[tf.Tensor]:
    """Class logits per level: [B, H, W, num_anchors * num_classes]."""
    return build_head(
        features,
        levels,
        num_anchors * num_classes,
        num_filters,
        repeats,
        name,
        keras.initializers.Constant(class_bias_init_value()),
        bn_momentum,
        bn_epsilon,
    )


def build_box_net(
    features: Sequence[tf.Tensor],
    levels: Sequence[int],
    num_anchors: int,
    num_filters: int,
    repeats: int,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    name: str = "box_net",
) -> list[tf.Tensor]:
    """Box encodings per level: [B, H, W, num_anchors * 4] in (ty, tx, th, tw) order."""
    return build_head(
        features,
        levels,
        num_anchors * 4,
        num_filters,
        repeats,
        name,
        keras.initializers.Zeros(),
        bn_momentum,
        bn_epsilon,
    )
