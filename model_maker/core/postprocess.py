"""Detections from raw model outputs, in TF (for Keras evaluation and as the TFLite reference).

:func:`postprocess_global` mirrors ``TFLite_Detection_PostProcess`` with
``max_classes_per_detection=1, use_regular_nms=false`` and scales 1.0, and the
``pre_nms_top_k`` gather the exported files put before that op: each anchor
keeps its best class, only the ``pre_nms_top_k`` anchors with the best scores
stay (ties: lower anchor index first), anchors whose best score is below the
threshold are dropped, greedy class-agnostic NMS (suppress IoU > iou_threshold)
in descending score order (ties: lower anchor index first), at most
``max_detections`` kept. :func:`postprocess_per_class` runs NMS per class
(``tf.image.combined_non_max_suppression``) over the same top-k anchors.

Both return, for a batch of B images and N = max_detections:
``boxes`` [B, N, 4] (ymin, xmin, ymax, xmax) normalised by the image size
(not clipped), ``classes`` [B, N] float32 0-based class ids, ``scores`` [B, N]
descending, ``num_detections`` [B] int32; rows past ``num_detections`` are zeros
here (the TFLite op leaves them uninitialised: always cut at ``num_detections``).
Tested equal to the TFLite op on random outputs (boxes to 1e-5, same classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from model_maker.core.box_coder import decode_boxes
from model_maker.core.detection_postprocess import NMSOptions, top_k_anchor_indices


def _normalized_boxes(
    box_encodings: tf.Tensor, anchors_yxyx: tf.Tensor, image_size: int | Sequence[int]
) -> tf.Tensor:
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    scale = tf.constant([height, width, height, width], tf.float32)
    anchors = tf.convert_to_tensor(anchors_yxyx, tf.float32) / scale
    return decode_boxes(tf.cast(box_encodings, tf.float32), anchors[None])


def _top_k_anchors(
    boxes: tf.Tensor, scores: tf.Tensor, num_anchors: int, nms: NMSOptions
) -> tuple[tf.Tensor, tf.Tensor]:
    """``boxes [B, A, 4]`` and ``scores [B, A, C]`` of each image's ``nms.pre_nms_top_k``
    anchors with the best class score, best first (all of them, unchanged, when that
    keeps every anchor)."""
    k = nms.candidates(num_anchors)
    if k >= num_anchors:
        return boxes, scores
    best = top_k_anchor_indices(scores, k)  # [B, k]
    return tf.gather(boxes, best, batch_dims=1), tf.gather(scores, best, batch_dims=1)


def postprocess_global(
    class_logits: tf.Tensor,
    box_encodings: tf.Tensor,
    anchors_yxyx: tf.Tensor,
    image_size: int | Sequence[int],
    nms: NMSOptions = NMSOptions(),
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Class-agnostic NMS over each anchor's best class (the TFLite op's fast NMS).

    Args:
      class_logits: [B, A, K] logits (sigmoid applied here).
      box_encodings: [B, A, 4] (ty, tx, th, tw).
      anchors_yxyx: [A, 4] anchors in pixels of an ``image_size`` input
        (pass normalised anchors with ``image_size=1``).
      image_size: model input size (int or (height, width)), to normalise boxes.
      nms: N (``max_detections``); only the ``pre_nms_top_k`` anchors with the best
        scores stay; anchors whose best score is below ``score_threshold`` are
        dropped; a box overlapping a kept box by IoU > ``iou_threshold`` is suppressed.

    Returns:
      (boxes [B, N, 4], classes [B, N] float32, scores [B, N], num_detections [B] int32).
    """
    max_detections, score_threshold, iou_threshold = (
        nms.max_detections,
        nms.score_threshold,
        nms.iou_threshold,
    )
    boxes = _normalized_boxes(box_encodings, anchors_yxyx, image_size)  # [B, A, 4]
    scores_all = tf.sigmoid(tf.cast(class_logits, tf.float32))
    boxes, scores_all = _top_k_anchors(boxes, scores_all, int(anchors_yxyx.shape[0]), nms)
    best_scores = tf.reduce_max(scores_all, axis=-1)
    best_classes = tf.cast(tf.argmax(scores_all, axis=-1), tf.float32)
    # The op keeps scores >= threshold; TF's NMS keeps > its threshold: mask here instead.
    masked_scores = tf.where(best_scores >= score_threshold, best_scores, -1.0)

    def one_image(
        args: tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor],
    ) -> tuple[tf.Tensor, ...]:
        image_boxes, image_scores, image_masked, image_classes = args
        selected = tf.image.non_max_suppression(
            image_boxes, image_masked, max_detections, iou_threshold, score_threshold=-0.5
        )
        count = tf.shape(selected)[0]
        pad = [[0, max_detections - count]]
        out_boxes = tf.pad(tf.gather(image_boxes, selected), [[0, max_detections - count], [0, 0]])
        out_classes = tf.pad(tf.gather(image_classes, selected), pad)
        out_scores = tf.pad(tf.gather(image_scores, selected), pad)
        return out_boxes, out_classes, out_scores, count

    out_boxes, out_classes, out_scores, count = tf.map_fn(
        one_image,
        (boxes, best_scores, masked_scores, best_classes),
        fn_output_signature=(
            tf.TensorSpec([max_detections, 4], tf.float32),
            tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    return out_boxes, out_classes, out_scores, count


def postprocess_per_class(
    class_logits: tf.Tensor,
    box_encodings: tf.Tensor,
    anchors_yxyx: tf.Tensor,
    image_size: int | Sequence[int],
    nms: NMSOptions = NMSOptions(),
    max_detections_per_class: int | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-class NMS: an anchor may yield one detection per class; same outputs as the global one.

    ``max_detections_per_class`` defaults to ``nms.max_detections``.
    """
    max_detections = nms.max_detections
    boxes = _normalized_boxes(box_encodings, anchors_yxyx, image_size)
    scores = tf.sigmoid(tf.cast(class_logits, tf.float32))
    boxes, scores = _top_k_anchors(boxes, scores, int(anchors_yxyx.shape[0]), nms)
    nms_boxes, nms_scores, nms_classes, valid = tf.image.combined_non_max_suppression(
        boxes[:, :, None, :],
        scores,
        max_output_size_per_class=max_detections_per_class or max_detections,
        max_total_size=max_detections,
        iou_threshold=nms.iou_threshold,
        score_threshold=nms.score_threshold,
        pad_per_class=False,
        clip_boxes=False,
    )
    return nms_boxes, nms_classes, nms_scores, tf.cast(valid, tf.int32)
