"""EfficientNet-Lite backbone as a functional tf_keras graph.

EfficientNet-Lite is EfficientNet without squeeze-excite, with ReLU6 and with
the stem (32 channels) and the first and last stages not scaled (automl's
``fix_head_stem``), see ``shared/NOTES-MODEL.md``. Only the feature extractor
is used by EfficientDet (the outputs of the last block of each stride);
:func:`build_efficientnet_lite_classifier` adds the ImageNet classifier head
(1280-channel conv, pooling, dense) on top, e.g. to check converted ImageNet
weights against a reference (see ``pretrained_backbone``).

Every layer name starts with the backbone's name (``efficientnet_lite0_...``),
so the freeze regex ``efficientnet`` selects exactly the backbone variables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tensorflow as tf
import tf_keras as keras

# Stage table of EfficientNet-B0/Lite0: (repeats, kernel, stride, expand ratio, in, out).
_BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280  # the classifier's head conv; not scaled in Lite (fix_head_stem)

# backbone name -> (width coefficient, depth coefficient)
BACKBONE_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "efficientnet-lite0": (1.0, 1.0),
    "efficientnet-lite1": (1.0, 1.1),
    "efficientnet-lite2": (1.1, 1.2),
    "efficientnet-lite3": (1.2, 1.4),
    "efficientnet-lite4": (1.4, 1.8),
}


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after width/depth scaling.

    Attributes:
      kernel_size: depthwise kernel size.
      stride: depthwise stride.
      expand_ratio: expansion of the 1x1 conv (1 means no expansion conv).
      input_filters: channels the block's expansion is computed from.
      output_filters: channels out of the projection conv.
    """

    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int


def round_filters(filters: int, width_coefficient: float, depth_divisor: int = 8) -> int:
    """Scale ``filters`` by the width coefficient, rounded to a multiple of ``depth_divisor``."""
    scaled = filters * width_coefficient
    rounded = max(depth_divisor, int(scaled + depth_divisor / 2) // depth_divisor * depth_divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += depth_divisor
    return int(rounded)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Scale a stage's block count by the depth coefficient (rounded up)."""
    return int(math.ceil(depth_coefficient * repeats))


def block_specs(
    width_coefficient: float, depth_coefficient: float, depth_divisor: int = 8
) -> list[BlockSpec]:
    """All MBConv blocks of the scaled network, in order."""
    specs: list[BlockSpec] = []
    last = len(_BASE_STAGES) - 1
    for i, (repeats, kernel, stride, expand, in_f, out_f) in enumerate(_BASE_STAGES):
        in_f = round_filters(in_f, width_coefficient, depth_divisor)
        out_f = round_filters(out_f, width_coefficient, depth_divisor)
        if i not in (0, last):  # Lite keeps the first and last stage unscaled in depth
            repeats = round_repeats(repeats, depth_coefficient)
        specs.append(BlockSpec(kernel, stride, expand, in_f, out_f))
        specs.extend(BlockSpec(kernel, 1, expand, out_f, out_f) for _ in range(repeats - 1))
    return specs


def _conv_init() -> keras.initializers.Initializer:
    # Normal with stddev sqrt(2 / fan_out), as automl's conv_kernel_initializer.
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _bn(name: str, momentum: float, epsilon: float) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)


def _mbconv(x: tf.Tensor, spec: BlockSpec, name: str, momentum: float, epsilon: float) -> tf.Tensor:
    inputs = x
    if spec.expand_ratio != 1:
        x = keras.layers.Conv2D(
            spec.input_filters * spec.expand_ratio,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=_conv_init(),
            name=f"{name}_expand_conv",
        )(x)
        x = _bn(f"{name}_expand_bn", momentum, epsilon)(x)
        x = keras.layers.ReLU(6.0, name=f"{name}_expand_relu6")(x)
    x = keras.layers.DepthwiseConv2D(
        spec.kernel_size,
        strides=spec.stride,
        padding="same",
        use_bias=False,
        depthwise_initializer=_conv_init(),
        name=f"{name}_depthwise_conv",
    )(x)
    x = _bn(f"{name}_depthwise_bn", momentum, epsilon)(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_depthwise_relu6")(x)
    x = keras.layers.Conv2D(
        spec.output_filters,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_conv_init(),
        name=f"{name}_project_conv",
    )(x)
    x = _bn(f"{name}_project_bn", momentum, epsilon)(x)
    if spec.stride == 1 and spec.input_filters == spec.output_filters:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def build_efficientnet_lite(
    images: tf.Tensor,
    backbone_name: str = "efficientnet-lite0",
    *,
    width_coefficient: float | None = None,
    depth_coefficient: float | None = None,
    depth_divisor: int = 8,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
) -> dict[int, tf.Tensor]:
    """Apply the EfficientNet-Lite feature extractor to normalised ``images``.

    Args:
      images: [B, H, W, 3] float tensor, already normalised ((x - 127) / 128).
      backbone_name: ``efficientnet-lite0`` .. ``efficientnet-lite4``; sets the
        coefficients unless given, and the layer-name prefix (``-`` -> ``_``).
      width_coefficient: channel multiplier override.
      depth_coefficient: block-repeat multiplier override.
      depth_divisor: channel rounding.
      bn_momentum: batch-norm momentum.
      bn_epsilon: batch-norm epsilon.

    Returns:
      level -> feature map for levels 1..5 (stride 2**level): the output of the
      last block at that stride (automl's ``reduction_<level>`` endpoints).
    """
    if backbone_name not in BACKBONE_COEFFICIENTS and (
        width_coefficient is None or depth_coefficient is None
    ):
        raise ValueError(
            f"unknown backbone {backbone_name!r} (known: {', '.join(BACKBONE_COEFFICIENTS)}); "
            "give width_coefficient and depth_coefficient for a custom one"
        )
    default_width, default_depth = BACKBONE_COEFFICIENTS.get(backbone_name, (1.0, 1.0))
    width = default_width if width_coefficient is None else width_coefficient
    depth = default_depth if depth_coefficient is None else depth_coefficient
    prefix = backbone_name.replace("-", "_")
    if "efficientnet" not in prefix:
        raise ValueError(f"backbone name {backbone_name!r} must contain 'efficientnet'")

    x = keras.layers.Conv2D(
        STEM_FILTERS,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer=_conv_init(),
        name=f"{prefix}_stem_conv",
    )(images)
    x = _bn(f"{prefix}_stem_bn", bn_momentum, bn_epsilon)(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_stem_relu6")(x)

    specs = block_specs(width, depth, depth_divisor)
    features: dict[int, tf.Tensor] = {}
    level = 1
    for i, spec in enumerate(specs):
        x = _mbconv(x, spec, f"{prefix}_blocks_{i}", bn_momentum, bn_epsilon)
        is_last_at_stride = i == len(specs) - 1 or specs[i + 1].stride > 1
        if is_last_at_stride:
            features[level] = x
            level += 1
    return features


def build_efficientnet_lite_classifier(
    backbone_name: str = "efficientnet-lite0",
    image_size: int = 224,
    num_classes: int = 1000,
    *,
    dropout_rate: float = 0.2,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    mean_rgb: float = 127.0,
    stddev_rgb: float = 128.0,
) -> keras.Model:
    """EfficientNet-Lite image classifier: the backbone plus the ImageNet head.

    Layers: ``input_normalization`` ((x - mean) / std, so the model takes pixels
    0..255), the backbone of :func:`build_efficientnet_lite` (same layer names
    as in the detector), then ``<prefix>_head_conv`` (1x1, 1280) +
    ``<prefix>_head_bn`` + ``<prefix>_head_relu6``, ``<prefix>_avg_pool``,
    ``<prefix>_dropout`` and ``<prefix>_logits`` (dense, raw logits).

    Args:
      backbone_name: ``efficientnet-lite0`` .. ``efficientnet-lite4``.
      image_size: square input size in pixels.
      num_classes: outputs of the dense layer (1000 for ImageNet).
      dropout_rate: dropout before the dense layer (training only).
      bn_momentum: batch-norm momentum.
      bn_epsilon: batch-norm epsilon.
      mean_rgb: pixel mean subtracted by the first layer.
      stddev_rgb: pixel scale divided by the first layer.

    Returns:
      A functional model: [B, S, S, 3] float32 pixels -> [B, num_classes] logits.
    """
    prefix = backbone_name.replace("-", "_")
    images = keras.Input((image_size, image_size, 3), name="images")
    x = keras.layers.Rescaling(
        1.0 / stddev_rgb, offset=-mean_rgb / stddev_rgb, name="input_normalization"
    )(images)
    features = build_efficientnet_lite(
        x, backbone_name, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon
    )
    x = features[max(features)]
    x = keras.layers.Conv2D(
        HEAD_FILTERS,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=_conv_init(),
        name=f"{prefix}_head_conv",
    )(x)
    x = _bn(f"{prefix}_head_bn", bn_momentum, bn_epsilon)(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_head_relu6")(x)
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_avg_pool")(x)
    x = keras.layers.Dropout(dropout_rate, name=f"{prefix}_dropout")(x)
    logits = keras.layers.Dense(num_classes, name=f"{prefix}_logits")(x)
    return keras.Model(images, logits, name=f"{prefix}_classifier")
