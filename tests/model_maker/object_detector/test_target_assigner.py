import numpy as np
import tensorflow as tf

from model_maker.object_detector.target_assigner import (
    IGNORE,
    NEGATIVE,
    assign_targets,
    pairwise_iou,
)

ANCHORS = np.array(
    [
        [0, 0, 10, 10],  # a0
        [0, 10, 10, 20],  # a1
        [50, 50, 60, 60],  # a2
        [0, 0, 20, 20],  # a3
    ],
    np.float32,
)


def test_pairwise_iou_by_hand():
    iou = pairwise_iou(ANCHORS, np.array([[0, 0, 10, 10], [0, 10, 4, 14]], np.float32)).numpy()
    np.testing.assert_allclose(iou[:, 0], [1.0, 0.0, 0.0, 0.25])
    np.testing.assert_allclose(iou[:, 1], [0.0, 0.16, 0.0, 0.04])


def test_threshold_and_forced_matches_and_padding():
    gt = np.array(
        [
            [0, 0, 10, 10],  # label 1: IoU 1 with a0 (0.25 with a3)
            [50, 50, 58, 58],  # label 0: IoU 0.64 with a2
            [0, 10, 4, 14],  # label 2: best IoU 0.16 with a1 -> forced match
            [0, 0, 20, 20],  # padding (label -1): would match a3 perfectly
        ],
        np.float32,
    )
    labels = np.array([1, 0, 2, -1], np.int32)
    cls, box, num = assign_targets(ANCHORS, gt, labels, num_classes=3)
    np.testing.assert_array_equal(cls.numpy(), [1, 2, 0, NEGATIVE])
    assert cls.dtype == tf.int32
    assert float(num) == 3.0
    np.testing.assert_allclose(box.numpy()[0], [0, 0, 0, 0], atol=1e-6)  # identical box
    # a1 centre (5, 15) 10x10; gt centre (2, 12) 4x4.
    np.testing.assert_allclose(box.numpy()[1], [-0.3, -0.3, np.log(0.4), np.log(0.4)], atol=1e-6)
    # a2 centre (55, 55) 10x10; gt centre (54, 54) 8x8.
    np.testing.assert_allclose(box.numpy()[2], [-0.1, -0.1, np.log(0.8), np.log(0.8)], atol=1e-6)
    np.testing.assert_array_equal(box.numpy()[3], [0, 0, 0, 0])


def test_ignore_zone_between_thresholds():
    gt = np.array([[0, 0, 10, 10]], np.float32)
    cls, _, num = assign_targets(
        ANCHORS, gt, np.array([0]), num_classes=1, match_threshold=0.5, unmatched_threshold=0.2
    )
    # a3 has IoU 0.25: between 0.2 and 0.5 -> ignored.
    np.testing.assert_array_equal(cls.numpy(), [0, NEGATIVE, NEGATIVE, IGNORE])
    assert float(num) == 1.0


def test_forced_match_overrides_ignore_and_first_box_wins():
    gt = np.array([[0, 10, 4, 14], [6, 16, 10, 20]], np.float32)  # both best on a1 (0.16)
    cls, box, num = assign_targets(
        ANCHORS, gt, np.array([2, 0]), num_classes=3, unmatched_threshold=0.1
    )
    np.testing.assert_array_equal(cls.numpy(), [NEGATIVE, 2, NEGATIVE, NEGATIVE])
    np.testing.assert_allclose(box.numpy()[1, :2], [-0.3, -0.3], atol=1e-6)
    assert float(num) == 1.0


def test_empty_and_all_padding_ground_truth():
    for gt, labels in [
        (np.zeros([0, 4], np.float32), np.zeros([0], np.int32)),
        (np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float32), np.array([-1, -1])),
        (np.array([[5, 5, 5, 9]], np.float32), np.array([0])),  # empty box
    ]:
        cls, box, num = assign_targets(ANCHORS, gt, labels, num_classes=2)
        np.testing.assert_array_equal(cls.numpy(), [NEGATIVE] * 4)
        np.testing.assert_array_equal(box.numpy(), np.zeros([4, 4]))
        assert float(num) == 0.0


def test_inside_tf_data_map_with_unknown_box_count():
    gts = [
        (np.array([[0, 0, 10, 10], [50, 50, 58, 58]], np.float32), np.array([1, 0], np.int32)),
        (np.zeros([0, 4], np.float32), np.zeros([0], np.int32)),
    ]
    ds = tf.data.Dataset.from_generator(
        lambda: iter(gts),
        output_signature=(
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ),
    ).map(lambda boxes, labels: assign_targets(ANCHORS, boxes, labels, num_classes=2))
    results = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(results[0][0], [1, NEGATIVE, 0, NEGATIVE])
    assert results[0][2] == 2.0
    np.testing.assert_array_equal(results[1][0], [NEGATIVE] * 4)
    assert results[1][1].shape == (4, 4)


def _reference(anchors, boxes, labels, match=0.5, unmatched=0.4):
    """The matching rules, written out box by box in numpy (padding and empty boxes skipped)."""
    valid = [
        g
        for g in range(len(boxes))
        if labels[g] >= 0 and (boxes[g, 2] - boxes[g, 0]) * (boxes[g, 3] - boxes[g, 1]) > 0
    ]
    iou = pairwise_iou(anchors, boxes).numpy()[:, valid] if valid else np.zeros((len(anchors), 0))
    best = iou.max(axis=1) if valid else np.full(len(anchors), -1.0)
    best_g = np.array([valid[i] for i in iou.argmax(axis=1)]) if valid else np.zeros(len(anchors))
    forced = {}
    for column, g in enumerate(valid):
        if iou[:, column].max() > 0:
            forced.setdefault(int(iou[:, column].argmax()), g)  # the first box wins
    cls, matched_g = [], []
    for a in range(len(anchors)):
        g = forced.get(a, int(best_g[a]))
        positive = a in forced or best[a] >= match
        matched_g.append(g if positive else None)
        if positive:
            cls.append(labels[g])
        else:
            cls.append(IGNORE if best[a] >= unmatched else NEGATIVE)
    return np.array(cls), matched_g


def test_targets_equal_the_rules_with_padding_and_empty_boxes_anywhere():
    # The encoder compares only the valid boxes with the anchors; padding rows and empty
    # boxes between them must change nothing, and indices must map back to the right box.
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 90, size=(60, 2)).astype(np.float32)
    anchors = np.concatenate([corners, corners + rng.uniform(5, 30, size=(60, 2))], axis=1)
    for trial in range(20):
        count = int(rng.integers(0, 8))
        top = rng.uniform(0, 90, size=(count, 2)).astype(np.float32)
        boxes = np.concatenate([top, top + rng.uniform(4, 40, size=(count, 2))], axis=1)
        labels = rng.integers(0, 3, size=count).astype(np.int32)
        if count and trial % 2:
            boxes[rng.integers(0, count)] = anchors[rng.integers(0, 60)]  # an exact match
        if count > 2:
            boxes[1, 2] = boxes[1, 0]  # an empty box
            labels[2] = -1  # a padding row among real ones
        pad = int(rng.integers(0, 20))
        boxes = np.concatenate([boxes, np.zeros((pad, 4), np.float32)])
        labels = np.concatenate([labels, -np.ones(pad, np.int32)])
        cls, box_targets, num_pos = assign_targets(anchors, boxes, labels, 3, 0.5, 0.4)
        want_cls, matched = _reference(anchors, boxes, labels)
        np.testing.assert_array_equal(cls.numpy(), want_cls, err_msg=f"trial {trial}")
        assert num_pos.numpy() == sum(g is not None for g in matched)
        for a, g in enumerate(matched):
            if g is not None:  # regression target of the box it matched
                want = assign_targets(anchors[a : a + 1], boxes[g : g + 1], [0], 3, 0.0, 0.0)[1]
                np.testing.assert_allclose(box_targets.numpy()[a], want.numpy()[0], atol=1e-5)
