"""Export an EfficientDet-Lite Keras model to a TFLite file that runs on devices.

The serving function of the TFLite model is ``images [1, H, W, 3]`` (raw
pixels 0..255: float32, or uint8/int8 for the integer variants) -> Keras
model -> sigmoid of the class logits -> one of:

* ``with_nms=True``: TFLite's ``TFLite_Detection_PostProcess`` op
  (:mod:`model_maker.core.detection_postprocess`), outputs named ``boxes``
  ``[1, N, 4]`` (ymin, xmin, ymax, xmax normalised to the input),
  ``classes`` ``[1, N]`` (0-based), ``scores`` ``[1, N]``,
  ``num_detections`` ``[1]``, all float32, N = ``max_detections``;
* ``with_nms=False`` (for GPU delegates, which do not run that op): outputs
  ``box_encodings`` ``[1, A, 4]`` (ty, tx, th, tw) and ``class_scores``
  ``[1, A, C]`` (after sigmoid), plus an anchors file ``[A, 4]``
  (yc, xc, h, w normalised, float32 ``.npy``) written beside the model; decoding and
  NMS are then the caller's (``postprocess_global`` mirrors the op).

Consumers find outputs by these signature names (or by shape), never by index.

Quantized inputs: with full-integer quantization the input is calibrated on
the representative images. So that a ``uint8`` input takes raw pixels
unchanged (scale 1, zero point 0), every calibration image gets one pixel of
0 and one of 255, which pins the calibrated input range to exactly 0..255.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_maker.core.detection_postprocess import NMSOptions, tflite_detection_postprocess
from model_maker.core.quantization import QuantizationConfig
from model_maker.core.tflite_convert import (
    TFLiteDescription,
    convert_concrete_function,
    describe_tflite,
    pin_pixel_range,  # noqa: F401 - API
)

LOG = logging.getLogger("qatflow")

INPUT_NAME = "images"
NMS_OUTPUTS = ("boxes", "classes", "scores", "num_detections")
RAW_OUTPUTS = ("box_encodings", "class_scores")
ANCHORS_SUFFIX = ".anchors.npy"


@dataclass(frozen=True)
class TFLiteExport:
    """What :func:`export_tflite` wrote.

    Attributes:
      path: the ``.tflite`` file.
      num_bytes: its size.
      description: its input and outputs (names, shapes, dtypes, quantization).
      with_nms: whether the post-processing op is inside.
      anchors_path: the anchors ``.npy`` (raw models only), else None.
      quantization: the converter flags used (None for float32).
    """

    path: str
    num_bytes: int
    description: TFLiteDescription
    with_nms: bool
    anchors_path: str | None = None
    quantization: dict[str, Any] | None = None


def anchors_yxhw(anchors: Any) -> np.ndarray:
    """``[A, 4]`` (yc, xc, h, w) normalised, from an ``Anchors`` object or an array."""
    if hasattr(anchors, "centers_yxhw_normalized"):
        anchors = anchors.centers_yxhw_normalized()
    array = np.asarray(anchors, np.float32)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"anchors must be [A, 4] (yc, xc, h, w), got shape {array.shape}")
    return array


def _input_size(model: Any) -> tuple[int, int]:
    shape = model.inputs[0].shape
    height, width, channels = shape[1], shape[2], shape[3]
    if height is None or width is None or channels != 3:
        raise ValueError(f"the model needs a fixed [B, H, W, 3] input, got {shape}")
    return int(height), int(width)


def _split_outputs(model: Any, outputs: Any, num_classes: int) -> tuple[Any, Any]:
    """(class_logits, box_encodings) of the model's outputs, by name, else by shape."""
    if isinstance(outputs, dict):
        return outputs["class_logits"], outputs["box_encodings"]
    outputs = list(outputs)
    if len(outputs) != 2:
        raise ValueError(
            f"expected 2 model outputs (class logits, box encodings), got {len(outputs)}"
        )
    names = list(getattr(model, "output_names", None) or [])
    if "class_logits" in names and "box_encodings" in names:
        by_name = dict(zip(names, outputs, strict=True))
        return by_name["class_logits"], by_name["box_encodings"]
    first, second = outputs
    if num_classes != 4 and first.shape[-1] == 4 and second.shape[-1] == num_classes:
        return second, first
    return first, second


def build_serving_function(
    model: Any,
    anchors: Any,
    *,
    num_classes: int,
    nms: NMSOptions = NMSOptions(),
    with_nms: bool = True,
) -> Any:
    """The concrete serving function ``images [1, H, W, 3] float32 -> named outputs``."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    height, width = _input_size(model)
    anchors_array = anchors_yxhw(anchors)

    # no AutoGraph: the control flow is on Python values (see model_maker.core.qat)
    @tf.function(
        input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, INPUT_NAME)],
        autograph=False,
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        class_logits, box_encodings = _split_outputs(
            model, model(images, training=False), num_classes
        )
        if class_logits.shape[-1] != num_classes:
            raise ValueError(
                f"model has {class_logits.shape[-1]} classes, export asked for {num_classes}"
            )
        if box_encodings.shape[1] != anchors_array.shape[0]:
            raise ValueError(
                f"model predicts {box_encodings.shape[1]} anchors, "
                f"anchors file has {anchors_array.shape[0]}"
            )
        class_scores = tf.sigmoid(class_logits)
        if not with_nms:
            return {"box_encodings": box_encodings, "class_scores": class_scores}
        return tflite_detection_postprocess(
            box_encodings,
            class_scores,
            tf.constant(anchors_array),
            num_classes=num_classes,
            nms=nms,
        )

    return serve.get_concrete_function()


def _resolve_quantization(
    quantization_config: QuantizationConfig | None, input_type: str | None
) -> QuantizationConfig | None:
    if input_type is None:
        return quantization_config
    if input_type not in ("float32", "uint8", "int8"):
        raise ValueError(f"input_type {input_type!r} is not one of float32, uint8, int8")
    if quantization_config is None or not quantization_config.is_full_integer:
        if input_type != "float32":
            raise ValueError(
                f"input_type {input_type} needs full-integer quantization "
                "(a QuantizationConfig with representative_data)"
            )
        return quantization_config
    return quantization_config.replace(inference_input_type=input_type)


def _write_bytes(path: str, content: bytes) -> None:
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as fh:
        fh.write(content)


def write_anchors(path: str, anchors: Any) -> str:
    """Write anchors ``[A, 4]`` (yc, xc, h, w normalised) as a float32 ``.npy``."""
    buffer = io.BytesIO()
    np.save(buffer, anchors_yxhw(anchors))
    _write_bytes(path, buffer.getvalue())
    return path


def export_tflite(
    model: Any,
    tflite_filepath: str,
    quantization_config: QuantizationConfig | None = None,
    *,
    anchors: Any,
    num_classes: int,
    nms: NMSOptions = NMSOptions(),
    with_nms: bool = True,
    input_type: str | None = None,
    anchors_filepath: str | None = None,
    converted: bytes | None = None,
) -> TFLiteExport:
    """Convert ``model`` (float or QAT) to a TFLite detector file.

    Args:
      model: functional tf_keras detector, images ``[B, H, W, 3]`` 0..255 ->
        (class_logits ``[B, A, C]``, box_encodings ``[B, A, 4]``); a QAT model
        (TFMOT fake-quant) converts to int8 kernels with the same function.
      tflite_filepath: where to write the ``.tflite`` (local path or gfile URL).
      quantization_config: converter flags (None: float32), e.g.
        :func:`~model_maker.core.quantization.get_default_quantization_config`.
      anchors: ``Anchors`` of the model, or ``[A, 4]`` (yc, xc, h, w) normalised.
      num_classes: C.
      nms: N and thresholds of the post-processing op.
      with_nms: put the post-processing op inside; False writes the raw outputs
        and an anchors file.
      input_type: override of the config's input type (float32, uint8 or int8);
        integer inputs need full-integer quantization.
      anchors_filepath: raw models: where to write the anchors (default:
        ``<tflite path without .tflite>.anchors.npy``).
      converted: this model's serving function already converted (e.g. the
        ``ptq_mixed`` flatbuffer of :mod:`model_maker.core.layer_errors`): written
        instead of converting; ``quantization_config`` then only describes it.

    Returns:
      A :class:`TFLiteExport` describing the written file.
    """
    config = _resolve_quantization(quantization_config, input_type)
    if config is not None and config.inference_output_type not in (None, "float32"):
        raise ValueError(
            "detector outputs are float32 (the post-processing op's); "
            f"inference_output_type {config.inference_output_type!r} is not supported"
        )
    content = converted
    if content is None:
        serve = build_serving_function(
            model,
            anchors,
            num_classes=num_classes,
            nms=nms,
            with_nms=with_nms,
        )
        content = convert_concrete_function(
            serve,
            model,
            config,
            allow_custom_ops=with_nms,
            representative_transform=pin_pixel_range,
        )
    _write_bytes(tflite_filepath, content)
    anchors_path = None
    if not with_nms:
        anchors_path = anchors_filepath or _default_anchors_path(tflite_filepath)
        write_anchors(anchors_path, anchors)
    description = describe_tflite(content)
    LOG.info(
        "wrote %s (%.2f MB, input %s, %s)",
        tflite_filepath,
        len(content) / 1e6,
        description.inputs[0].dtype,
        "with NMS" if with_nms else "raw outputs",
    )
    return TFLiteExport(
        path=tflite_filepath,
        num_bytes=len(content),
        description=description,
        with_nms=with_nms,
        anchors_path=anchors_path,
        quantization=config.as_dict() if config is not None else None,
    )


def _default_anchors_path(tflite_filepath: str) -> str:
    stem = (
        tflite_filepath[: -len(".tflite")]
        if tflite_filepath.endswith(".tflite")
        else tflite_filepath
    )
    return stem + ANCHORS_SUFFIX


def expected_outputs(with_nms: bool) -> Sequence[str]:
    """Signature output names of an exported detector."""
    return NMS_OUTPUTS if with_nms else RAW_OUTPUTS
