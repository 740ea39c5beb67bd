"""Faster R-CNN box coder without scale factors (TFLite_Detection_PostProcess with scales 1.0).

For a box (y, x, h, w by centre and size) and its anchor (ya, xa, ha, wa)::

    ty = (y - ya) / ha    tx = (x - xa) / wa    th = log(h / ha)    tw = log(w / wa)

Boxes and anchors are (ymin, xmin, ymax, xmax) in the same units (pixels or
normalised); encodings are (ty, tx, th, tw), unit-free.
"""

from __future__ import annotations

import tensorflow as tf

_EPSILON = 1e-8


def _centers(boxes_yxyx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    ymin, xmin, ymax, xmax = tf.unstack(boxes_yxyx, axis=-1)
    height = ymax - ymin
    width = xmax - xmin
    return ymin + 0.5 * height, xmin + 0.5 * width, height, width


def encode_boxes(boxes_yxyx: tf.Tensor, anchors_yxyx: tf.Tensor) -> tf.Tensor:
    """Encode ``boxes_yxyx`` [..., 4] relative to ``anchors_yxyx`` (broadcastable) -> [..., 4].

    Degenerate boxes (zero height or width) are clamped to 1e-8 before the log.
    """
    boxes_yxyx = tf.convert_to_tensor(boxes_yxyx, tf.float32)
    anchors_yxyx = tf.convert_to_tensor(anchors_yxyx, tf.float32)
    yc, xc, h, w = _centers(boxes_yxyx)
    yca, xca, ha, wa = _centers(anchors_yxyx)
    ha = tf.maximum(ha, _EPSILON)
    wa = tf.maximum(wa, _EPSILON)
    h = tf.maximum(h, _EPSILON)
    w = tf.maximum(w, _EPSILON)
    ty = (yc - yca) / ha
    tx = (xc - xca) / wa
    th = tf.math.log(h / ha)
    tw = tf.math.log(w / wa)
    return tf.stack([ty, tx, th, tw], axis=-1)


def decode_boxes(encodings: tf.Tensor, anchors_yxyx: tf.Tensor) -> tf.Tensor:
    """Decode (ty, tx, th, tw) ``encodings`` [..., 4] against ``anchors_yxyx`` -> yxyx boxes."""
    encodings = tf.convert_to_tensor(encodings, tf.float32)
    anchors_yxyx = tf.convert_to_tensor(anchors_yxyx, tf.float32)
    yca, xca, ha, wa = _centers(anchors_yxyx)
    ty, tx, th, tw = tf.unstack(encodings, axis=-1)
    h = tf.exp(th) * ha
    w = tf.exp(tw) * wa
    yc = ty * ha + yca
    xc = tx * wa + xca
    return tf.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w], axis=-1)
