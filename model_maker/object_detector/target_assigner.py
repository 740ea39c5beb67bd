"""Anchor labelling for training (automl's ArgMaxMatcher with forced matches), in pure TF ops.

Usable inside ``tf.data.Dataset.map``: no Python loops over boxes, any number
of ground-truth boxes including zero.

Conventions:

- ``anchors_yxyx`` and ``gt_boxes_yxyx`` are (ymin, xmin, ymax, xmax) in the
  same units (pixels of the model input, as ``Anchors.boxes_yxyx``).
- ``gt_labels`` are 0-based class indices 0..K-1; padding rows have label -1
  (rows with a negative label or an empty box are ignored entirely).
- ``cls_targets`` are class ids [A] int32: the matched class (>= 0) for a
  positive anchor, ``NEGATIVE`` (-1) for background, ``IGNORE`` (-2) for
  anchors in the ignore zone (no class loss). One-hot expansion happens in
  the loss.
"""

from __future__ import annotations

import tensorflow as tf

from model_maker.core.box_coder import encode_boxes

NEGATIVE = -1
IGNORE = -2


def pairwise_iou(boxes1_yxyx: tf.Tensor, boxes2_yxyx: tf.Tensor) -> tf.Tensor:
    """IoU of every box of [N, 4] against every box of [M, 4] -> [N, M] (0 for empty unions)."""
    b1 = tf.convert_to_tensor(boxes1_yxyx, tf.float32)[:, None, :]
    b2 = tf.convert_to_tensor(boxes2_yxyx, tf.float32)[None, :, :]
    inter_h = tf.maximum(tf.minimum(b1[..., 2], b2[..., 2]) - tf.maximum(b1[..., 0], b2[..., 0]), 0)
    inter_w = tf.maximum(tf.minimum(b1[..., 3], b2[..., 3]) - tf.maximum(b1[..., 1], b2[..., 1]), 0)
    inter = inter_h * inter_w
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    union = area1 + area2 - inter
    return tf.math.divide_no_nan(inter, union)


def assign_targets(
    anchors_yxyx: tf.Tensor,
    gt_boxes_yxyx: tf.Tensor,
    gt_labels: tf.Tensor,
    num_classes: int,
    match_threshold: float = 0.5,
    unmatched_threshold: float = 0.5,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Match anchors to ground-truth boxes and encode the regression targets.

    An anchor is positive when its best IoU is >= ``match_threshold``, negative
    when it is < ``unmatched_threshold``, ignored in between. Every valid
    ground-truth box is also matched to the anchor with which it has the
    highest IoU (if that IoU is > 0), even below the threshold ("forced
    match"); an anchor forced by several boxes takes the first of them.

    Args:
      anchors_yxyx: [A, 4] anchors.
      gt_boxes_yxyx: [G, 4] boxes (G may be 0).
      gt_labels: [G] 0-based class ids, -1 for padding.
      num_classes: K; labels >= K are an error.
      match_threshold: IoU from which an anchor is positive.
      unmatched_threshold: IoU below which an anchor is negative.

    Returns:
      cls_targets [A] int32 (class id, -1 negative, -2 ignore),
      box_targets [A, 4] float32 (ty, tx, th, tw), zeros for non-positive anchors,
      num_positives float32 scalar.
    """
    if unmatched_threshold > match_threshold:
        raise ValueError(
            f"unmatched_threshold {unmatched_threshold} > match_threshold {match_threshold}"
        )
    anchors = tf.convert_to_tensor(anchors_yxyx, tf.float32)
    gt_boxes = tf.reshape(tf.convert_to_tensor(gt_boxes_yxyx, tf.float32), [-1, 4])
    gt_labels = tf.reshape(tf.cast(gt_labels, tf.int32), [-1])
    num_anchors = tf.shape(anchors)[0]
    tf.debugging.assert_less(
        gt_labels, tf.constant(num_classes, tf.int32), message="gt label >= num_classes"
    )

    area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    valid = (gt_labels >= 0) & (area > 0)
    # Only the valid boxes meet the anchors: the input pipeline pads every image to
    # max_instances_per_image boxes (100 by default), and comparing the padding with
    # ~19k anchors (320 px) was most of the label encoding's cost.
    keep = tf.cast(tf.reshape(tf.where(valid), [-1]), tf.int32)  # [V], in box order
    num_valid = tf.shape(keep)[0]
    boxes = tf.gather(gt_boxes, keep)
    iou = pairwise_iou(anchors, boxes)  # [A, V]
    # A column that never matches keeps argmax/max defined when V == 0.
    iou_padded = tf.concat([iou, -tf.ones([num_anchors, 1])], axis=1)
    best_iou = tf.reduce_max(iou_padded, axis=1)
    best_gt = tf.argmax(iou_padded, axis=1, output_type=tf.int32)
    matched = best_iou >= match_threshold
    ignored = (best_iou >= unmatched_threshold) & ~matched

    # Forced matches: each valid box's best anchor. unsorted_segment_max over
    # -gt_index picks the first box when several force the same anchor.
    best_anchor = tf.argmax(iou, axis=0, output_type=tf.int32)  # [V]
    forces = tf.reduce_max(iou, axis=0) > 0.0
    segment = tf.where(forces, best_anchor, num_anchors)  # dummy segment A for the rest
    first = tf.math.unsorted_segment_max(-tf.range(num_valid), segment, num_anchors + 1)[:-1]
    forced = first > tf.int32.min  # empty segments hold the lowest int32
    forced_gt = tf.where(forced, -first, 0)

    final_gt = tf.where(forced, forced_gt, best_gt)  # in 0..V (V = the padding column)
    positive = matched | forced
    ignored = ignored & ~forced
    labels_padded = tf.concat([tf.gather(gt_labels, keep), [NEGATIVE]], axis=0)
    boxes_padded = tf.concat([boxes, tf.zeros([1, 4])], axis=0)
    matched_labels = tf.gather(labels_padded, final_gt)
    cls_targets = tf.where(positive, matched_labels, tf.where(ignored, IGNORE, NEGATIVE))
    matched_boxes = tf.gather(boxes_padded, final_gt)
    box_targets = tf.where(positive[:, None], encode_boxes(matched_boxes, anchors), 0.0)
    num_positives = tf.reduce_sum(tf.cast(positive, tf.float32))
    return tf.cast(cls_targets, tf.int32), box_targets, num_positives
