"""Export an image classifier (float or QAT Keras model) to a TFLite file with metadata.

The serving function of the TFLite model is ``images [1, H, W, 3]`` (raw
pixels 0..255: float32, or uint8 for the integer variants; the model
normalises them itself) -> Keras model (logits) -> softmax, with one output
named ``probabilities`` ``[1, C]`` float32 that sums to 1. The softmax is
inside the model (the manifest entry says so with ``"softmax": true``).

Variants follow :func:`model_maker.core.quantization.quantization_config_for_variant`:
``float32`` (no config), ``float16``, ``dynamic_range``, ``ptq_int8`` (the
float model, full int8 calibrated on representative images, uint8 input,
float32 output) and ``qat_int8`` (the same flags on the QAT model of
:func:`model_maker.image_classifier.qat.quantize_classifier`, whose learnt
fake-quant ranges take precedence over calibration).

Quantized inputs: every calibration image gets one pixel of 0 and one of 255
(:func:`pin_pixel_range`), which pins the calibrated input range to exactly
0..255, so a ``uint8`` input takes raw pixels unchanged (scale 1, zero point
0). In the int8 graph the softmax has TFLite's fixed output quantization
(scale 1/256, zero point -128) and is dequantized to the float32 output.

Every file gets TFLite metadata (:mod:`model_maker.core.tflite_metadata`:
labels packed inside as ``labels.txt``, normalisation mean 0 / std 1 because
the model normalises itself) unless ``metadata=None``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from model_maker.core.convert_options import INT8_VARIANTS, VARIANTS, ModelInfo
from model_maker.core.data import fileio
from model_maker.core.errors import UsageError
from model_maker.core.quantization import QuantizationConfig
from model_maker.core.settings import replace
from model_maker.core.tflite_convert import (
    convert_concrete_function,
    describe_tflite,
    pin_pixel_range,  # noqa: F401 - API
)
from model_maker.core.tflite_metadata import (
    METADATA_VERSION,
    classifier_metadata,
    write_metadata,
)

LOG = logging.getLogger("qatflow")

#: Signature input name of an exported classifier.
INPUT_NAME = "images"
#: Signature output name: softmax probabilities ``[1, C]`` float32.
OUTPUT_NAME = "probabilities"
#: Normalisation the metadata declares: the model takes raw pixels.
INPUT_MEAN, INPUT_STD = 0.0, 1.0
#: Default metadata fields (an empty name becomes ``qatflow <variant>``).
DEFAULT_MODEL_INFO = ModelInfo()
#: TFMOT wrapper classes (by name: TFMOT need not load to tell a QAT model).
_QAT_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2")


def _input_size(model: Any) -> tuple[int, int]:
    shape = model.inputs[0].shape
    height, width, channels = shape[1], shape[2], shape[3]
    if height is None or width is None or channels != 3:
        raise UsageError(f"the classifier needs a fixed [B, H, W, 3] input, got {shape}")
    return int(height), int(width)


def _num_classes(model: Any) -> int:
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else model.output_shape
    if len(model.outputs) != 1 or len(shape) != 2 or shape[-1] is None:
        raise UsageError(
            f"the classifier needs one logits output [B, C], got {[o.shape for o in model.outputs]}"
        )
    return int(shape[-1])


def build_serving_function(model: Any) -> Any:
    """The concrete function ``images [1, H, W, 3] float32 -> {"probabilities": softmax}``."""
    # deferred: TensorFlow takes seconds to import; only the conversion needs it
    import tensorflow as tf

    height, width = _input_size(model)

    # no AutoGraph: the control flow is on Python values (see model_maker.core.qat)
    @tf.function(
        input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32, INPUT_NAME)],
        autograph=False,
    )
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(images, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    return serve.get_concrete_function()


def export_saved_model(model: Any, saved_model_dir: str) -> str:
    """Write a SavedModel for serving: ``images [B, H, W, 3]`` float32 pixels 0..255 ->
    ``{"probabilities": [B, C]}`` (softmax inside), signature ``serving_default``.

    The weights are constants in the graph (:mod:`~model_maker.core.frozen_graph`),
    as in the detector's export: no variables to save and restore. To train
    further, rebuild the Keras model from its config and weights."""
    # deferred: TensorFlow takes seconds to import; only the export needs it
    import tensorflow as tf

    from model_maker.core.frozen_graph import save_frozen

    height, width = _input_size(model)
    _num_classes(model)
    signature = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = model(images, training=False)
        return {OUTPUT_NAME: tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}

    save_frozen(serve, signature, saved_model_dir)
    LOG.info("wrote the serving SavedModel %s", saved_model_dir)
    return saved_model_dir


def is_qat_model(model: Any) -> bool:
    """True when ``model`` holds TFMOT fake-quant wrappers (a QAT model)."""
    return any(type(layer).__name__ in _QAT_WRAPPERS for layer in model.layers)


def infer_variant(model: Any, quantization_config: QuantizationConfig | None) -> str:
    """The pipeline variant name ``quantization_config`` (and the model) amounts to."""
    if quantization_config is None:
        return "float32"
    if quantization_config.is_full_integer:
        return "qat_int8" if is_qat_model(model) else "ptq_int8"
    if "float16" in quantization_config.supported_types:
        return "float16"
    return "dynamic_range"


def _check_config(config: QuantizationConfig | None, model: Any, variant: str) -> None:
    if variant not in VARIANTS:
        raise UsageError(f"unknown TFLite variant {variant!r} (known: {', '.join(VARIANTS)})")
    if config is not None and config.inference_output_type not in (None, "float32"):
        raise UsageError(
            "classifier outputs are float32 probabilities; "
            f"inference_output_type {config.inference_output_type!r} is not supported"
        )
    if variant == "qat_int8" and not is_qat_model(model):
        raise UsageError("variant qat_int8 needs the QAT model (quantize_classifier)")
    if variant in INT8_VARIANTS and (config is None or not config.is_full_integer):
        raise UsageError(f"variant {variant} needs a full-integer QuantizationConfig")


def export_tflite(
    model: Any,
    tflite_filepath: str,
    quantization_config: QuantizationConfig | None = None,
    *,
    labels: Sequence[str],
    metadata: ModelInfo | None = DEFAULT_MODEL_INFO,
    variant: str | None = None,
    converted: bytes | None = None,
) -> dict[str, Any]:
    """Convert a classifier (logits output) to a TFLite file with softmax inside.

    Args:
      model: functional tf_keras classifier, images ``[B, H, W, 3]`` 0..255 ->
        logits ``[B, C]``; a QAT model (TFMOT fake quant) converts to int8
        kernels with the same function.
      tflite_filepath: where to write the ``.tflite`` (local path or gfile URL).
      quantization_config: converter flags (None: float32), e.g.
        ``quantization_config_for_variant("ptq_int8", images)``.
      labels: class names, ``labels[k]`` = model class k (C of them).
      metadata: general fields of the TFLite metadata (an empty name becomes
        ``qatflow <variant>``); None writes a bare model.
      variant: the pipeline variant name for the entry; None infers it from
        the config and the model.
      converted: this model's serving function already converted (e.g. the
        ``ptq_mixed`` flatbuffer of :mod:`model_maker.core.layer_errors`): written
        instead of converting; ``quantization_config`` then only describes it.

    Returns:
      A manifest entry: ``variant``, ``file`` (base name), ``bytes`` (final
      size, metadata included), ``source_model`` (float/qat), ``input`` (name,
      shape, dtype, scale, zero_point, mean, std), ``outputs``
      (``["probabilities"]``), ``output_details``, ``softmax`` (True: the
      probabilities come from a softmax inside the model), ``num_classes``,
      ``quantization`` (the converter flags, None for float32) and
      ``metadata`` (``present``, ``version``, ``bytes_added``, or ``reason``).

    Raises:
      UsageError: the model, labels, config and variant do not fit together.
    """
    num_classes = _num_classes(model)
    labels = [str(label) for label in labels]
    if len(labels) != num_classes:
        raise UsageError(f"the model has {num_classes} classes but {len(labels)} labels were given")
    variant = variant or infer_variant(model, quantization_config)
    _check_config(quantization_config, model, variant)
    content = converted
    if content is None:
        content = convert_concrete_function(
            build_serving_function(model),
            model,
            quantization_config,
            representative_transform=pin_pixel_range,
        )
    description = describe_tflite(content)
    if metadata is None:
        metadata_entry: dict[str, Any] = {"present": False, "reason": "metadata=None"}
    else:
        info = replace(metadata, name=metadata.name or f"qatflow {variant}")
        spec = classifier_metadata(
            info, num_classes=num_classes, mean=(INPUT_MEAN,), std=(INPUT_STD,), output=OUTPUT_NAME
        )
        with_metadata = write_metadata(content, spec, labels)
        metadata_entry = {
            "present": True,
            "version": METADATA_VERSION,
            "bytes_added": len(with_metadata) - len(content),
        }
        content = with_metadata
    fileio.write_bytes(tflite_filepath, content)
    LOG.info(
        "wrote %s (%s, %.2f MB, input %s)",
        tflite_filepath,
        variant,
        len(content) / 1e6,
        description.inputs[0].dtype,
    )
    return {
        "variant": variant,
        "file": tflite_filepath.rstrip("/").rsplit("/", 1)[-1],
        "bytes": len(content),
        "source_model": "qat" if is_qat_model(model) else "float",
        "input": {**description.inputs[0].as_dict(), "mean": INPUT_MEAN, "std": INPUT_STD},
        "outputs": [OUTPUT_NAME],
        "output_details": [o.as_dict() for o in description.outputs],
        "softmax": True,
        "num_classes": num_classes,
        "quantization": None if quantization_config is None else quantization_config.as_dict(),
        "metadata": metadata_entry,
    }
