"""A tiny functional detector with EfficientDet-Lite's input/output contract, for export tests.

Input ``images`` [B, 64, 64, 3] raw pixels 0..255 (normalised inside by a
Rescaling layer, as the real model); outputs ``class_logits`` [B, A, C] and
``box_encodings`` [B, A, 4] over real :class:`Anchors` of levels 3..5 with one
anchor per position (A = 8*8 + 4*4 + 2*2 = 84). Class kernels are drawn wide
so that scores differ clearly between anchors (no ties in NMS order). Converts
to TFLite in about a second, where EfficientDet-Lite0 takes tens of seconds.

Import: ``from tests.model_maker.object_detector.tiny_detector import ...``.
"""

from __future__ import annotations

import numpy as np

IMAGE_SIZE = 64
NUM_CLASSES = 2
LEVELS = (3, 4, 5)


def tiny_anchors():
    from model_maker.object_detector.anchors import Anchors

    return Anchors(
        min_level=LEVELS[0],
        max_level=LEVELS[-1],
        num_scales=1,
        aspect_ratios=(1.0,),
        anchor_scale=2.0,
        image_size=IMAGE_SIZE,
    )


def build_tiny_detector(num_classes: int = NUM_CLASSES, seed: int = 0):
    """The functional tf_keras model (outputs ``[class_logits, box_encodings]``)."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="input_normalization")(images)
    feats = []
    for i, filters in enumerate((8, 16, 16, 16, 16)):  # strides 2, 4, 8, 16, 32
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"c{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(6.0, name=f"relu{i}")(x)
        if i >= 2:
            feats.append(x)
    class_flat, box_flat = [], []
    for level, feat in zip(LEVELS, feats, strict=True):
        f = layers.DepthwiseConv2D(3, padding="same", name=f"dw_p{level}")(feat)
        f = layers.ReLU(6.0, name=f"dw_relu_p{level}")(f)
        c = layers.Conv2D(
            num_classes,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=1.5),
            bias_initializer=keras.initializers.Constant(-2.0),
            name=f"class_p{level}",
        )(f)
        b = layers.Conv2D(
            4,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.2),
            name=f"box_p{level}",
        )(f)
        class_flat.append(layers.Reshape((-1, num_classes), name=f"class_flat_p{level}")(c))
        box_flat.append(layers.Reshape((-1, 4), name=f"box_flat_p{level}")(b))
    class_logits = layers.Concatenate(axis=1, name="class_logits")(class_flat)
    box_encodings = layers.Concatenate(axis=1, name="box_encodings")(box_flat)
    return keras.Model(images, [class_logits, box_encodings], name="tiny_detector")


def calibration_images(count: int = 8, seed: int = 1) -> list[np.ndarray]:
    """Float32 [64, 64, 3] images 0..255 with bright squares on a dark background."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = rng.uniform(0, 60, (IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
        y, x = rng.integers(0, IMAGE_SIZE - 24, 2)
        image[y : y + 24, x : x + 24] = rng.uniform(150, 250, 3)
        out.append(image)
    return out


def quantize_aware(model, images: list[np.ndarray]):
    """TFMOT ``quantize_apply`` of ``model`` (convs, BN, ReLU annotated; Rescaling left float),
    with the fake-quant ranges settled by a few training-mode passes over ``images``."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    tfq = tfmot.quantization.keras
    quantizable = (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.BatchNormalization,
        keras.layers.ReLU,
    )

    def annotate(layer):
        return tfq.quantize_annotate_layer(layer) if isinstance(layer, quantizable) else layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    qat = tfq.quantize_apply(annotated)
    batch = np.stack(images).astype(np.float32)
    for _ in range(3):
        qat(batch, training=True)
    return qat
