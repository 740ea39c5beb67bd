"""The two ends every classifier shares: normalised pixel input and the logits head."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

#: Name of the model's input (pixels 0..255) and of its fixed normalisation layer.
INPUT_NAME = "images"
NORMALIZATION_NAME = "input_normalization"


def normalized_input(
    image_size: int, mean_rgb: float, stddev_rgb: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """``(images, normalised)``: the model input and ``(images - mean_rgb) / stddev_rgb``.

    The normalisation is a ``Rescaling`` layer with a scalar scale and offset,
    the form :func:`model_maker.core.qat.rewrite_for_int8` splits into the
    int8 MUL and ADD of QAT (see ``image_classifier.qat``).
    """
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    if not stddev_rgb > 0:
        raise ValueError(f"stddev_rgb must be positive, got {stddev_rgb}")
    images = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
    normalised = keras.layers.Rescaling(
        1.0 / stddev_rgb, offset=-mean_rgb / stddev_rgb, name=NORMALIZATION_NAME
    )(images)
    return images, normalised


def classification_head(
    features: tf.Tensor, num_classes: int, dropout_rate: float, prefix: str = ""
) -> tf.Tensor:
    """Global average pooling, dropout and the ``Dense`` logits layer (``<prefix>logits``)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    x = keras.layers.GlobalAveragePooling2D(name=f"{prefix}avg_pool")(features)
    x = keras.layers.Dropout(dropout_rate, name=f"{prefix}dropout")(x)
    return keras.layers.Dense(num_classes, name=f"{prefix}logits")(x)
