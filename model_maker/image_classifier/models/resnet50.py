"""ResNet50 classifier (He et al. 2016, v1) from ``keras.applications``.

``keras.applications.ResNet50(include_top=False, weights=None)`` applied to
the normalised input tensor gives one flat functional graph (Conv2D with bias,
BatchNormalization, ``Activation('relu')``, ZeroPadding2D, MaxPooling2D, Add),
which TFMOT quantizes whole (conv + BN + relu fuse). At 224 px and 1000
classes it has 25,636,712 parameters (BN moving statistics included), the
published count.
"""

from __future__ import annotations

import tf_keras as keras

from model_maker.image_classifier.models.head import classification_head, normalized_input


def build_resnet50(
    num_classes: int,
    image_size: int = 224,
    *,
    dropout_rate: float = 0.2,
    mean_rgb: float = 127.5,
    stddev_rgb: float = 127.5,
) -> keras.Model:
    """ResNet50 for ``num_classes`` classes.

    Args:
      num_classes: outputs of the logits layer.
      image_size: square input size in pixels (224 by default).
      dropout_rate: dropout before the logits layer (training only).
      mean_rgb: pixel mean subtracted by the first layer.
      stddev_rgb: pixel scale divided by the first layer.

    Returns:
      ``images [B, S, S, 3] float32 0..255 -> logits [B, num_classes]``.
    """
    images, x = normalized_input(image_size, mean_rgb, stddev_rgb)
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=x)
    logits = classification_head(backbone.output, num_classes, dropout_rate)
    return keras.Model(images, logits, name=f"resnet50_{image_size}")
