"""TFLite's ``TFLite_Detection_PostProcess`` op inside an exported detector.

TensorFlow has no op that equals TFLite's detection post-processing (box
decoding + class-agnostic "fast" NMS + top-k). The TFLite converter instead
recognises a ``tf.function`` whose ``experimental_implements`` attribute holds a
``TFLite_Detection_PostProcess`` NodeDef and replaces the whole function by the
custom op (tensorflow: compiler/mlir/lite/utils/nms_utils.cc). The body of that
function is a placeholder with the right output shapes; it is never run by
TFLite, so a SavedModel built with it must not be used for TF inference.

Tensor contract of the op (batch 1, A anchors, C classes, N = max_detections):

* inputs: box encodings ``[1, A, 4]`` as ``(ty, tx, th, tw)`` (Faster R-CNN
  coder, scale factors 1.0), class scores after sigmoid ``[1, A, C]`` (no
  background column), anchors ``[A, 4]`` as ``(yc, xc, h, w)`` normalised 0..1;
* outputs, all float32: ``boxes [1, N, 4]`` ``(ymin, xmin, ymax, xmax)``
  normalised, ``classes [1, N]`` 0-based integral values, ``scores [1, N]``
  sorted descending, ``num_detections [1]``; rows past ``num_detections`` are
  padding.

:func:`convert_to_tflite` converts a serving function that calls
:func:`tflite_detection_postprocess` with ``allow_custom_ops`` so the op is
fused; the signature outputs keep the names the serving function returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from model_maker.core.settings import Settings, check_range

#: Name of the TFLite custom op.
OP_NAME = "TFLite_Detection_PostProcess"
#: Output names of :func:`tflite_detection_postprocess`, in the op's output order.
OUTPUT_KEYS = ("boxes", "classes", "scores", "num_detections")


@dataclass(frozen=True)
class NMSOptions(Settings):
    """Detection post-processing settings: the pipeline config's ``postprocess`` section.

    The same values drive the ``TFLite_Detection_PostProcess`` op of every
    exported variant, the Trainer's serving SavedModel and the Evaluator's Keras
    float baseline, so all of them are compared under one rule.

    Attributes:
      max_detections: detections kept after NMS (N of the op's outputs).
      score_threshold: anchors whose best class score is below this are dropped (0..1).
      iou_threshold: IoU above which the lower-scored box is suppressed (0..1).
      pre_nms_top_k: only the k anchors with the best class scores go on to NMS
        (ties: lower anchor index first); 0, or k >= the anchor count, sends every
        anchor. NMS visits boxes best first, so the detections are the same as
        without it whenever ``max_detections`` of them are found within the first k;
        with fewer, fewer come out. In a TFLite file this is a ``TOPK_V2``, three
        ``GATHER`` ops and a ``BITCAST`` before the post-processing op, which otherwise
        sorts every anchor above ``score_threshold``: 2-3 ms of a 320 px Lite0 call.
    """

    max_detections: int = 25
    score_threshold: float = 1e-8
    iou_threshold: float = 0.5
    pre_nms_top_k: int = 1000

    def validate(self) -> None:
        check_range("max_detections", self.max_detections, 1)
        check_range("score_threshold", self.score_threshold, 0.0, 1.0)
        check_range("iou_threshold", self.iou_threshold, 0.0, 1.0)
        check_range("pre_nms_top_k", self.pre_nms_top_k, 0)

    def candidates(self, num_anchors: int) -> int:
        """How many anchors go on to NMS out of ``num_anchors``."""
        if self.pre_nms_top_k == 0:
            return num_anchors
        return min(self.pre_nms_top_k, num_anchors)


def top_k_anchor_indices(class_scores: Any, k: int) -> Any:
    """``[B, k]`` indices of each image's ``k`` anchors with the best class score
    (``class_scores [B, A, C]``), best first; ties by lower anchor index, as the op's own
    stable sort. The one rule of ``NMSOptions.pre_nms_top_k``, in the exported files and
    in :mod:`model_maker.core.postprocess` alike."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    return tf.math.top_k(tf.reduce_max(class_scores, axis=-1), k=k).indices


@dataclass(frozen=True)
class PostProcessParams(Settings):
    """Attributes of the ``TFLite_Detection_PostProcess`` op.

    Attributes:
      num_classes: classes in the score tensor (no background column).
      nms: detections kept and the thresholds.
    """

    num_classes: int
    nms: NMSOptions = NMSOptions()

    def validate(self) -> None:
        check_range("num_classes", self.num_classes, 1)

    @property
    def max_detections(self) -> int:
        return self.nms.max_detections

    @property
    def score_threshold(self) -> float:
        return self.nms.score_threshold

    @property
    def iou_threshold(self) -> float:
        return self.nms.iou_threshold

    def implements_signature(self) -> str:
        """The NodeDef text the converter matches (``experimental_implements``)."""
        # Floats are written with repr so that small thresholds (1e-8) survive;
        # "%f" would round them to 0.
        attrs = [
            ("max_detections", "i", str(int(self.max_detections))),
            ("max_classes_per_detection", "i", "1"),
            ("use_regular_nms", "b", "false"),
            ("nms_score_threshold", "f", repr(float(self.score_threshold))),
            ("nms_iou_threshold", "f", repr(float(self.iou_threshold))),
            ("num_classes", "i", str(int(self.num_classes))),
            ("y_scale", "f", "1.0"),
            ("x_scale", "f", "1.0"),
            ("h_scale", "f", "1.0"),
            ("w_scale", "f", "1.0"),
        ]
        parts = [f'name: "{OP_NAME}"']
        parts += [f'attr {{ key: "{k}" value {{ {t}: {v} }} }}' for k, t, v in attrs]
        return " ".join(parts)


def tflite_detection_postprocess(
    box_encodings: Any,
    class_scores: Any,
    anchors_yxhw: Any,
    *,
    num_classes: int,
    nms: NMSOptions = NMSOptions(),
) -> dict[str, Any]:
    """Call the TFLite detection post-processing op from a function being converted.

    Args:
      box_encodings: float ``[1, A, 4]`` ``(ty, tx, th, tw)``.
      class_scores: float ``[1, A, num_classes]``, after sigmoid.
      anchors_yxhw: float ``[A, 4]`` ``(yc, xc, h, w)`` normalised to 0..1.
      num_classes: C.
      nms: N, the thresholds and the pre-NMS top-k (``TOPK_V2``, ``GATHER`` and
        ``BITCAST`` ops before the op when it keeps fewer than A anchors).

    Returns:
      ``{"boxes": [1, N, 4], "classes": [1, N], "scores": [1, N],
      "num_detections": [1]}``. In TensorFlow these are zeros (placeholders);
      the values exist only after conversion to TFLite.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    params = PostProcessParams(num_classes, nms)
    n = params.max_detections
    num_anchors = int(anchors_yxhw.shape[0])
    k = nms.candidates(num_anchors)
    if k < num_anchors:
        # the op sorts and scans the k best boxes instead of every one
        best = top_k_anchor_indices(class_scores, k)[0]
        box_encodings = tf.gather(box_encodings, best, axis=1)
        class_scores = tf.gather(class_scores, best, axis=1)
        # the anchors are gathered as their int32 bit patterns: a float32 GATHER would be
        # quantized with the int8 ops (its range is calibrated), costing anchors ~1 px
        anchor_bits = tf.bitcast(tf.cast(anchors_yxhw, tf.float32), tf.int32)
        anchors_yxhw = tf.bitcast(tf.gather(anchor_bits, best, axis=0), tf.float32)

    @tf.function(experimental_implements=params.implements_signature())
    def _postprocess(encodings, scores, anchors):
        # Placeholder body: the converter swaps the function for the custom op.
        # Outputs are returned in the op's output order.
        del encodings, scores, anchors
        boxes = tf.zeros([1, n, 4], tf.float32, name="boxes")
        classes = tf.zeros([1, n], tf.float32, name="classes")
        det_scores = tf.zeros([1, n], tf.float32, name="scores")
        num = tf.zeros([1], tf.float32, name="num_detections")
        return boxes, classes, det_scores, num

    outputs = _postprocess(
        tf.cast(box_encodings, tf.float32),
        tf.cast(class_scores, tf.float32),
        tf.cast(anchors_yxhw, tf.float32),
    )
    return dict(zip(OUTPUT_KEYS, outputs, strict=True))


def convert_to_tflite(
    concrete_function: Any,
    trackable: Any = None,
    *,
    representative_dataset: Callable[[], Iterable[list[Any]]] | None = None,
    inference_input_type: Any = None,
    float16: bool = False,
) -> bytes:
    """Convert a serving function that uses :func:`tflite_detection_postprocess`.

    Args:
      concrete_function: the serving function (``tf.function(...).get_concrete_function()``)
        with a fixed ``[1, H, W, 3]`` input and a dict of outputs; the dict keys
        become the signature's output names.
      trackable: the object owning the function's variables (a Keras model or
        ``tf.Module``); required when the function captures variables.
        Without it an empty ``tf.Module`` is used.
      representative_dataset: when given, full-integer post-training quantisation
        (int8 kernels, ``TFLITE_BUILTINS`` kept for the custom op, float outputs).
      inference_input_type: input type of a quantised model, e.g. ``tf.uint8``
        (default float32).
      float16: float16 weights (ignored when quantising to int8).

    Returns:
      The TFLite flatbuffer.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    # Without a trackable object the converter emits no signature (and drops the
    # output names), so an empty module stands in when the function has no variables.
    owner = trackable if trackable is not None else tf.Module()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], owner)
    converter.allow_custom_ops = True
    if representative_dataset is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        if inference_input_type is not None:
            converter.inference_input_type = inference_input_type
    elif float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()
