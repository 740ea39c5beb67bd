import numpy as np
import tensorflow as tf

from model_maker.core.box_coder import decode_boxes, encode_boxes


def test_encode_by_hand():
    anchor = tf.constant([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    box = tf.constant([[2.0, 4.0, 12.0, 24.0]])  # centre (7, 14), 10 x 20
    np.testing.assert_allclose(
        encode_boxes(box, anchor).numpy(), [[0.2, 0.9, 0.0, np.log(2.0)]], atol=1e-6
    )


def test_decode_by_hand():
    anchor = tf.constant([[0.0, 0.0, 10.0, 10.0]])
    codes = tf.constant([[0.2, 0.9, 0.0, np.log(2.0)]])
    np.testing.assert_allclose(decode_boxes(codes, anchor).numpy(), [[2, 4, 12, 24]], atol=1e-5)


def test_round_trip_with_batch_broadcasting():
    rng = np.random.default_rng(0)
    yx = rng.uniform(0, 300, size=(50, 2))
    hw = rng.uniform(2, 200, size=(50, 2))
    anchors = np.concatenate([yx, yx + hw], axis=1).astype(np.float32)
    yx_b = rng.uniform(0, 300, size=(3, 50, 2))
    hw_b = rng.uniform(1, 250, size=(3, 50, 2))
    boxes = np.concatenate([yx_b, yx_b + hw_b], axis=2).astype(np.float32)
    codes = encode_boxes(boxes, anchors[None])
    assert codes.shape == (3, 50, 4)
    np.testing.assert_allclose(decode_boxes(codes, anchors[None]).numpy(), boxes, atol=2e-3)


def test_zero_codes_give_the_anchor():
    anchors = tf.constant([[-8.0, -8.0, 16.0, 16.0], [1.0, 2.0, 3.0, 7.0]])
    np.testing.assert_allclose(decode_boxes(tf.zeros([2, 4]), anchors).numpy(), anchors.numpy())
