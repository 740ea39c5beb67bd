"""EfficientDet training loss: sigmoid focal loss on classes + Huber loss on box encodings.

With ``P`` = the number of positive anchors summed over the batch and
``N = P + 1`` (automl's normaliser)::

    cls  = sum over non-ignored anchors and classes of focal(logit, one_hot) / N
    box  = sum over positive anchors and the 4 coordinates of huber(pred - target) / (4 N)
    total = cls + box_loss_weight * box

(the box term is averaged over the 4 coordinates, as automl's Keras
``BoxLoss``). Targets come from
:func:`~model_maker.object_detector.target_assigner.assign_targets`: class
ids (-1 negative, -2 ignore) and (ty, tx, th, tw) encodings.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from model_maker.object_detector.target_assigner import IGNORE


def focal_loss(
    logits: tf.Tensor, one_hot: tf.Tensor, alpha: float = 0.25, gamma: float = 1.5
) -> tf.Tensor:
    """Element-wise sigmoid focal loss (not reduced, not normalised)."""
    prob = tf.sigmoid(logits)
    p_t = one_hot * prob + (1.0 - one_hot) * (1.0 - prob)
    alpha_t = one_hot * alpha + (1.0 - one_hot) * (1.0 - alpha)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=one_hot, logits=logits)
    return alpha_t * tf.pow(1.0 - p_t, gamma) * cross_entropy


def huber_loss(error: tf.Tensor, delta: float = 0.1) -> tf.Tensor:
    """Element-wise Huber loss: 0.5 e^2 for |e| <= delta, delta (|e| - delta / 2) beyond."""
    abs_error = tf.abs(error)
    quadratic = tf.minimum(abs_error, delta)
    linear = abs_error - quadratic
    return 0.5 * quadratic * quadratic + delta * linear


@dataclass(frozen=True)
class DetectionLoss:
    """The EfficientDet loss as a callable.

    Attributes:
      num_classes: K (class logits have K columns, no background).
      alpha: focal loss weight of positives (negatives get 1 - alpha).
      gamma: focal loss focusing exponent.
      delta: Huber loss threshold.
      box_loss_weight: weight of the box loss in the total.
    """

    num_classes: int
    alpha: float = 0.25
    gamma: float = 1.5
    delta: float = 0.1
    box_loss_weight: float = 50.0

    def __call__(
        self,
        cls_logits: tf.Tensor,
        box_encodings: tf.Tensor,
        cls_targets: tf.Tensor,
        box_targets: tf.Tensor,
        num_positives: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        """Loss of one batch.

        Args:
          cls_logits: [B, A, K] model class logits.
          box_encodings: [B, A, 4] model box encodings.
          cls_targets: [B, A] int class ids, -1 negative, -2 ignore.
          box_targets: [B, A, 4] target encodings (ignored where not positive).
          num_positives: [B] (or scalar) positive anchors per image; summed.

        Returns:
          {"total", "cls", "box"}: float32 scalars.
        """
        cls_logits = tf.cast(cls_logits, tf.float32)
        box_encodings = tf.cast(box_encodings, tf.float32)
        cls_targets = tf.cast(cls_targets, tf.int32)
        normalizer = tf.reduce_sum(tf.cast(num_positives, tf.float32)) + 1.0

        one_hot = tf.one_hot(cls_targets, self.num_classes, dtype=tf.float32)  # -1, -2 -> zeros
        per_class = focal_loss(cls_logits, one_hot, self.alpha, self.gamma)
        keep = tf.cast(tf.not_equal(cls_targets, IGNORE), tf.float32)[..., None]
        cls_loss = tf.reduce_sum(per_class * keep) / normalizer

        positive = tf.cast(cls_targets >= 0, tf.float32)[..., None]
        error = box_encodings - tf.cast(box_targets, tf.float32)
        box_loss = tf.reduce_sum(huber_loss(error, self.delta) * positive) / (4.0 * normalizer)

        total = cls_loss + self.box_loss_weight * box_loss
        return {"total": total, "cls": cls_loss, "box": box_loss}


def detection_loss(
    cls_logits: tf.Tensor,
    box_encodings: tf.Tensor,
    cls_targets: tf.Tensor,
    box_targets: tf.Tensor,
    num_positives: tf.Tensor,
    num_classes: int | None = None,
    **kwargs: float,
) -> dict[str, tf.Tensor]:
    """Functional form of :class:`DetectionLoss` (num_classes defaults to the logits' width)."""
    k = num_classes if num_classes is not None else int(cls_logits.shape[-1])
    return DetectionLoss(k, **kwargs)(
        cls_logits, box_encodings, cls_targets, box_targets, num_positives
    )
