import math

import numpy as np
import pytest
import tensorflow as tf

from model_maker.object_detector.losses import DetectionLoss, detection_loss, huber_loss

# Focal loss of a logit 0 (p = 0.5): alpha_t * (1 - 0.5) ** 1.5 * log(2).
POS_AT_ZERO = 0.25 * 0.5**1.5 * math.log(2.0)  # 0.0612...
NEG_AT_ZERO = 0.75 * 0.5**1.5 * math.log(2.0)  # 0.1838...


def _inputs():
    # one image, 3 anchors, 2 classes: a0 positive (class 1), a1 negative, a2 ignored
    cls_logits = tf.constant([[[0.0, 0.0], [0.0, 0.0], [5.0, -3.0]]])
    box_pred = tf.constant([[[0.05, -0.2, 0.0, 0.1], [9.0, 9.0, 9.0, 9.0], [1.0, 1.0, 1.0, 1.0]]])
    cls_targets = tf.constant([[1, -1, -2]])
    box_targets = tf.zeros([1, 3, 4])
    return cls_logits, box_pred, cls_targets, box_targets, tf.constant([1.0])


def test_huber_by_hand():
    got = huber_loss(tf.constant([0.05, -0.2, 0.0, 0.1, -0.1]), delta=0.1).numpy()
    np.testing.assert_allclose(got, [0.00125, 0.015, 0.0, 0.005, 0.005], atol=1e-7)


def test_loss_values_by_hand():
    losses = DetectionLoss(num_classes=2)(*_inputs())
    normalizer = 1.0 + 1.0
    # a0: class 0 is a negative entry, class 1 the positive one; a1: two negatives; a2 ignored.
    expected_cls = (NEG_AT_ZERO + POS_AT_ZERO + 2 * NEG_AT_ZERO) / normalizer
    # only a0's box counts: huber 0.00125 + 0.015 + 0 + 0.005, averaged over 4 coords.
    expected_box = (0.00125 + 0.015 + 0.0 + 0.005) / (4 * normalizer)
    assert float(losses["cls"]) == pytest.approx(expected_cls, rel=1e-5)
    assert float(losses["box"]) == pytest.approx(expected_box, rel=1e-5)
    assert float(losses["total"]) == pytest.approx(expected_cls + 50 * expected_box, rel=1e-5)


def test_normaliser_is_the_batch_sum_of_positives_plus_one():
    logits, boxes, cls, box_t, _ = _inputs()
    two = [tf.concat([t, t], axis=0) for t in (logits, boxes, cls, box_t)]
    losses = detection_loss(*two, num_positives=tf.constant([1.0, 2.0]))
    expected_cls = 2 * (3 * NEG_AT_ZERO + POS_AT_ZERO) / (1.0 + 2.0 + 1.0)
    assert float(losses["cls"]) == pytest.approx(expected_cls, rel=1e-5)


def test_confident_correct_predictions_cost_little():
    loss = DetectionLoss(num_classes=1, box_loss_weight=0.0)
    targets = tf.constant([[0, -1]])
    zeros = tf.zeros([1, 2, 4])
    good = loss(tf.constant([[[6.0], [-6.0]]]), zeros, targets, zeros, tf.constant([1.0]))
    bad = loss(tf.constant([[[-6.0], [6.0]]]), zeros, targets, zeros, tf.constant([1.0]))
    assert float(good["total"]) < 1e-4
    assert float(bad["total"]) > 1.0
    assert float(good["box"]) == 0.0
