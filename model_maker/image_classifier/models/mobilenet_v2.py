"""MobileNetV2 classifier (Sandler et al. 2018) from ``keras.applications``.

``keras.applications.MobileNetV2(include_top=False, weights=None)`` applied
to the normalised input tensor gives one flat functional graph (Conv2D,
BatchNormalization, ``ReLU(6.)`` layers, DepthwiseConv2D, ZeroPadding2D, Add),
which TFMOT quantizes whole; the 1280-channel last conv is part of it. At 224
px, width 1.0 and 1000 classes it has 3,538,984 parameters (BN moving
statistics included), the published count.
"""

from __future__ import annotations

import tf_keras as keras

from model_maker.image_classifier.models.head import classification_head, normalized_input


def build_mobilenet_v2(
    num_classes: int,
    image_size: int = 224,
    *,
    alpha: float = 1.0,
    dropout_rate: float = 0.2,
    mean_rgb: float = 127.5,
    stddev_rgb: float = 127.5,
) -> keras.Model:
    """MobileNetV2 with width multiplier ``alpha`` for ``num_classes`` classes.

    Args:
      num_classes: outputs of the logits layer.
      image_size: square input size in pixels (224 by default).
      alpha: width multiplier of every layer (the 1280-channel last conv is
        only scaled for ``alpha > 1``, as in the paper).
      dropout_rate: dropout before the logits layer (training only).
      mean_rgb: pixel mean subtracted by the first layer.
      stddev_rgb: pixel scale divided by the first layer.

    Returns:
      ``images [B, S, S, 3] float32 0..255 -> logits [B, num_classes]``.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    images, x = normalized_input(image_size, mean_rgb, stddev_rgb)
    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_tensor=x, alpha=alpha
    )
    logits = classification_head(backbone.output, num_classes, dropout_rate)
    return keras.Model(images, logits, name=f"mobilenet_v2_{alpha:g}_{image_size}")
