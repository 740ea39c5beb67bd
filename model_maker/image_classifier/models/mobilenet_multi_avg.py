"""MobileNet-MultiAVG ("MobileNetV3.5 MultiAVG") classifier as a flat functional graph.

The architecture is TF Model Garden's ``MobileNetMultiAVG`` block list
(official/vision/modeling/backbones/mobilenet.py, from Chu et al. 2020,
"Discovering Multi-Hardware Mobile Models via Architecture Search"), rebuilt
here from plain Keras layers so TFMOT can quantize it (Model Garden's blocks
are subclassed layers):

- stem: 3x3 conv stride 2, 32 channels, BN, ReLU;
- 16 inverted bottlenecks (:data:`BLOCKS`): 1x1 expansion conv
  (``make_divisible(in * ratio, 8)`` channels) + BN + ReLU, kxk depthwise
  + BN + ReLU, 1x1 projection + BN, and a residual ``Add`` when the stride is
  1 and the channels do not change; no squeeze-excite, no hard-swish;
- 1x1 conv to 960 + BN + ReLU, global average pooling (kept 4-D), 1x1 conv
  to 1280 + BN + ReLU without bias (Model Garden's QAT-friendly last layer);
- the shared head: average pooling (of the 1x1 map), dropout, Dense logits.

Every activation is a ``ReLU`` layer, so TFMOT fuses conv + BN + ReLU.
Convs have no bias and ``VarianceScaling`` (fan-in) initial kernels; BN
momentum 0.99, epsilon 1e-3 (Model Garden defaults).
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from model_maker.image_classifier.models.head import classification_head, normalized_input

#: (kernel, stride, output channels, expansion ratio) of each inverted bottleneck, in order.
BLOCKS: tuple[tuple[int, int, int, float], ...] = (
    (3, 2, 32, 3.0),
    (3, 1, 32, 2.0),
    (5, 2, 64, 5.0),
    (3, 1, 64, 3.0),
    (3, 1, 64, 2.0),
    (3, 1, 64, 3.0),
    (5, 2, 128, 6.0),
    (3, 1, 128, 3.0),
    (3, 1, 128, 3.0),
    (3, 1, 128, 3.0),
    (3, 1, 160, 6.0),
    (3, 1, 160, 4.0),
    (3, 2, 192, 6.0),
    (5, 1, 192, 4.0),
    (5, 1, 192, 4.0),
    (5, 1, 192, 4.0),
)
STEM_FILTERS = 32
TOP_FILTERS = 960
EMBEDDING_FILTERS = 1280
PREFIX = "mobilenet_multi_avg"
#: Model Garden's default kernel initializer: truncated normal, variance 1 / fan_in.
_INITIALIZER = "VarianceScaling"


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` (at least ``divisor``), never more than
    10% below ``value`` (Model Garden's ``make_divisible``/``round_filters`` rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def _conv_bn_relu(
    x: tf.Tensor, filters: int, kernel: int, stride: int, name: str, relu: bool = True
) -> tf.Tensor:
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=_INITIALIZER,
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _inverted_bottleneck(
    x: tf.Tensor, kernel: int, stride: int, filters: int, ratio: float, name: str
) -> tf.Tensor:
    inputs = x
    in_filters = int(x.shape[-1])
    if ratio > 1:
        x = _conv_bn_relu(x, make_divisible(in_filters * ratio), 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_initializer=_INITIALIZER,
        name=f"{name}_depthwise_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    x = _conv_bn_relu(x, filters, 1, 1, f"{name}_project", relu=False)
    if stride == 1 and in_filters == filters:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_mobilenet_multi_avg(
    num_classes: int,
    image_size: int = 224,
    *,
    filter_size_scale: float = 1.0,
    dropout_rate: float = 0.3,
    mean_rgb: float = 127.5,
    stddev_rgb: float = 127.5,
) -> keras.Model:
    """MobileNet-MultiAVG for ``num_classes`` classes.

    Args:
      num_classes: outputs of the logits layer.
      image_size: square input size in pixels (224 by default).
      filter_size_scale: width multiplier of every conv (rounded to multiples
        of 8); the last 1280-channel conv keeps 1280 for multipliers below 1
        (Model Garden's ``finegrain_classification_mode``).
      dropout_rate: dropout before the logits layer (0.3 in Model Garden's
        ImageNet recipe).
      mean_rgb: pixel mean subtracted by the first layer.
      stddev_rgb: pixel scale divided by the first layer.

    Returns:
      ``images [B, S, S, 3] float32 0..255 -> logits [B, num_classes]``.
    """
    if not filter_size_scale > 0:
        raise ValueError(f"filter_size_scale must be positive, got {filter_size_scale}")

    def scaled(filters: float) -> int:
        return make_divisible(filters * filter_size_scale)

    images, x = normalized_input(image_size, mean_rgb, stddev_rgb)
    x = _conv_bn_relu(x, scaled(STEM_FILTERS), 3, 2, f"{PREFIX}_stem")
    for i, (kernel, stride, filters, ratio) in enumerate(BLOCKS):
        x = _inverted_bottleneck(x, kernel, stride, scaled(filters), ratio, f"{PREFIX}_blocks_{i}")
    x = _conv_bn_relu(x, scaled(TOP_FILTERS), 1, 1, f"{PREFIX}_top")
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{PREFIX}_top_pool")(x)
    embedding = EMBEDDING_FILTERS / min(filter_size_scale, 1.0)
    x = _conv_bn_relu(x, scaled(embedding), 1, 1, f"{PREFIX}_embedding")
    logits = classification_head(x, num_classes, dropout_rate)
    return keras.Model(images, logits, name=f"{PREFIX}_{filter_size_scale:g}_{image_size}")
