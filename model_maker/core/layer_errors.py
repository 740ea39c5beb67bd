"""Per-layer quantization error of a post-training-quantized model, and mixed (selective) int8.

Both start from one *calibrated* model: the converter's float TFLite model with
the activation ranges of the representative images recorded
(:func:`calibrate_concrete_function`). From it

* :func:`measure_layer_errors` builds TFLite's debug model (a ``NumericVerify``
  op after every quantized op, which runs the op in float on the same quantized
  input and returns the difference) and runs ``tf.lite.experimental.
  QuantizationDebugger`` over a few images: per quantized tensor the RMSE of
  that difference, the RMSE in units of the tensor's quantization step
  (``rmse_over_scale``: 0.29 is the rounding error of a perfect int8 tensor,
  values of several steps mean the int8 range clips or coarsens what the layer
  computes), the mean error (bias) and the largest error;
* :func:`quantize_calibrated` writes the int8 model, optionally with some ops
  kept in float (``denylisted_nodes`` of TFLite's MLIR quantizer): the
  ``ptq_mixed`` variant keeps the N worst layers, or the layers a user names, in
  float and quantizes the rest.

The TFLite tensor names carry the Keras layer scopes (``model/c0/Conv2D``,
fused ops join names with ``;``); :func:`keras_layers_in` maps them back to
the model's layer names so that reports and ``convert.mixed_float_patterns``
speak Keras.

Not for QAT models: their ranges come from training (fake-quant), so there is
nothing to calibrate and the debugger does not apply.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model_maker.core.convert_options import CALIBRATED_VARIANTS
from model_maker.core.data import fileio
from model_maker.core.errors import UsageError
from model_maker.core.quantization import QuantizationConfig
from model_maker.core.tflite_convert import concrete_function_converter

LOG = logging.getLogger("qatflow")

#: File of the TFLite artifact holding the per-layer errors of ``ptq_int8``.
LAYER_ERRORS_FILE = "layer_errors.json"
#: Sort key of the per-layer table.
RANK_METRIC = "rmse_over_scale"


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one quantized op's output, measured by ``NumericVerify``.

    Attributes:
      tensor: TFLite output tensor name (what ``denylisted_nodes`` takes).
      op: TFLite op (CONV_2D, ADD, ...).
      layer: the Keras layer that op mostly comes from (the last fused name).
      keras_layers: every Keras layer named in the tensor name, in order.
      rmse_over_scale: RMSE of (quantized - float) in quantization steps.
      rmse: RMSE in the tensor's own units.
      mean_error: mean of (quantized - float): a systematic shift.
      max_abs_error: largest absolute difference seen.
      scale: the tensor's quantization scale.
      zero_point: its zero point.
      num_elements: values per image in the tensor.
    """

    tensor: str
    op: str
    layer: str
    keras_layers: tuple[str, ...]
    rmse_over_scale: float
    rmse: float
    mean_error: float
    max_abs_error: float
    scale: float
    zero_point: int
    num_elements: int

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["keras_layers"] = list(self.keras_layers)
        return out


def keras_layer_names(model: Any) -> frozenset[str]:
    """Names of ``model``'s layers at every depth (sub-models and layers inside layers)."""
    names = set()
    for module in getattr(model, "submodules", ()):
        name = getattr(module, "name", None)
        if isinstance(name, str) and hasattr(module, "get_config"):
            names.add(name)
    return frozenset(names)


def keras_layers_in(tensor_name: str, layer_names: Iterable[str]) -> tuple[str, ...]:
    """The Keras layer names in a TFLite tensor name, one per fused part, in order.

    Each ``;``-separated part is a TensorFlow op name (``scope/.../layer/Op``); its
    layer is the deepest scope segment that is a layer name. Parts naming no layer
    (``Sigmoid`` of the serving function) contribute nothing.
    """
    known = set(layer_names)
    found: list[str] = []
    for part in tensor_name.split(";"):
        segments = part.split("/")[:-1]  # the last segment is the op
        for segment in reversed(segments):
            if segment in known:
                if segment not in found:
                    found.append(segment)
                break
    return tuple(found)


def calibrate_concrete_function(
    concrete_function: Any,
    trackable: Any,
    quantization_config: QuantizationConfig,
    *,
    allow_custom_ops: bool = False,
    representative_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> bytes:
    """The float TFLite model with the calibration ranges of the representative data
    recorded (not yet quantized): the input of :func:`measure_layer_errors` and
    :func:`quantize_calibrated`."""
    if not quantization_config.is_full_integer:
        raise UsageError("calibration needs a full-integer QuantizationConfig (with images)")
    converter = concrete_function_converter(concrete_function, trackable, allow_custom_ops)
    quantization_config.set_converter_with_quantization(
        converter, transform=representative_transform
    )
    converter.experimental_new_quantizer = True
    converter._experimental_calibrate_only = True  # noqa: SLF001 - TFLite's documented debug path
    return converter.convert()


def quantize_calibrated(
    calibrated: bytes,
    *,
    input_type: str = "uint8",
    float_tensors: Sequence[str] = (),
) -> bytes:
    """Int8 model from a calibrated one; ops writing ``float_tensors`` stay float.

    With no float tensors the ops are those of the converter's own full-integer
    result (``ptq_int8``). Input ``input_type`` (uint8, int8 or float32), float32 outputs.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    return tflite_convert.mlir_quantize(
        calibrated,
        input_data_type=tf.dtypes.as_dtype(input_type),
        output_data_type=tf.float32,
        denylisted_nodes=list(float_tensors) or None,
    )


def measure_layer_errors(
    calibrated: bytes,
    images: Iterable[np.ndarray],
    layer_names: Iterable[str] = (),
) -> list[LayerError]:
    """Per-layer error of the int8 model of ``calibrated`` on ``images``, worst first.

    Args:
      calibrated: :func:`calibrate_concrete_function`'s model.
      images: model inputs ``[1, H, W, 3]`` float32, as the representative data.
      layer_names: the Keras model's layer names (:func:`keras_layer_names`).
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    inputs = [np.asarray(image, np.float32) for image in images]
    if not inputs:
        raise UsageError("the layer error measurement needs at least one image")
    debug_model = tflite_convert.mlir_quantize(calibrated, enable_numeric_verify=True)
    with warnings.catch_warnings():
        # the debugger runs TensorFlow's own interpreter (it has the NumericVerify
        # kernel, LiteRT's has not); its deprecation notice is not the user's concern
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: ([image] for image in inputs),
        )
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    names = frozenset(layer_names)
    rows = []
    for row in csv.DictReader(io.StringIO(dump.getvalue())):
        scale = float(row["scale"])
        rmse = math.sqrt(max(float(row["mean_squared_error"]), 0.0))
        keras = keras_layers_in(row["tensor_name"], names)
        rows.append(
            LayerError(
                tensor=row["tensor_name"],
                op=row["op_name"],
                layer=keras[-1] if keras else "",
                keras_layers=keras,
                rmse_over_scale=rmse / scale if scale > 0 else 0.0,
                rmse=rmse,
                mean_error=float(row["mean_error"]),
                max_abs_error=float(row["max_abs_error"]),
                scale=scale,
                zero_point=int(float(row["zero_point"])),
                num_elements=int(float(row["num_elements"])),
            )
        )
    rows.sort(key=lambda r: r.rmse_over_scale, reverse=True)
    return rows


def select_float_layers(
    errors: Sequence[LayerError], count: int, patterns: Sequence[str] = ()
) -> list[LayerError]:
    """The ops ``ptq_mixed`` keeps float: those whose Keras layer (or TFLite tensor) name
    matches one of ``patterns`` (``re.search``), else the ``count`` worst of ``errors``.

    Raises:
      UsageError: a pattern is not a regular expression, or matches no layer.
    """
    if not patterns:
        return list(errors[: max(count, 0)])
    chosen: list[LayerError] = []
    for pattern in patterns:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            message = f"convert.mixed_float_patterns: {pattern!r} is not a regex: {exc}"
            raise UsageError(message) from None
        hits = [
            e for e in errors if any(regex.search(name) for name in (*e.keras_layers, e.tensor))
        ]
        if not hits:
            raise UsageError(
                f"convert.mixed_float_patterns: {pattern!r} matches no quantized layer "
                f"(e.g. {', '.join(e.layer or e.tensor for e in errors[:5])})"
            )
        chosen.extend(e for e in hits if e not in chosen)
    return chosen


def layer_errors_document(
    errors: Sequence[LayerError], *, variant: str, samples: int, seconds: float
) -> dict[str, Any]:
    """The ``layer_errors.json`` of a TFLite set (every layer, worst first)."""
    return {
        "variant": variant,
        "samples": samples,
        "rank_metric": RANK_METRIC,
        "seconds": round(seconds, 2),
        "about": (
            "TFLite QuantizationDebugger (NumericVerify) on calibration images: each quantized "
            "op's output against the same op run in float on the same input; rmse_over_scale "
            "is the RMSE in quantization steps (0.29 = rounding only)"
        ),
        "layers": [{"rank": i + 1, **e.as_dict()} for i, e in enumerate(errors)],
    }


@dataclass(frozen=True)
class CalibratedModels:
    """What one calibration of the float model gives a TFLite set.

    Attributes:
      errors: per-layer errors of the int8 model, worst first (empty: not measured).
      document: ``layer_errors.json`` content, or None when not measured.
      ptq: the ``ptq_int8`` flatbuffer, or None when not asked for.
      mixed: the ``ptq_mixed`` flatbuffer, or None when not asked for.
      mixed_float: the layers ``mixed`` keeps float.
      mixed_rule: how they were chosen, in words (for the manifest and report).
    """

    errors: tuple[LayerError, ...] = ()
    document: dict[str, Any] | None = None
    ptq: bytes | None = None
    mixed: bytes | None = None
    mixed_float: tuple[LayerError, ...] = ()
    mixed_rule: str = ""

    def flatbuffer(self, variant: str) -> bytes | None:
        """The converted file of ``variant`` made from this calibration, else None."""
        return {"ptq_int8": self.ptq, "ptq_mixed": self.mixed}.get(variant)

    def manifest_fields(self, variant: str) -> dict[str, Any]:
        """Extra manifest fields of ``variant``'s entry: for ``ptq_mixed``, which layers
        stayed float and why; {} for the others."""
        if variant != "ptq_mixed":
            return {}
        return {
            "float_layers": [
                {"layer": e.layer, "tensor": e.tensor, "op": e.op} for e in self.mixed_float
            ],
            "float_layer_rule": self.mixed_rule,
        }

    def write_layer_errors(self, output_dir: str) -> None:
        """Write ``layer_errors.json`` into the TFLite set's folder, when measured."""
        if self.document is not None:
            fileio.write_text(
                fileio.join(output_dir, LAYER_ERRORS_FILE), json.dumps(self.document, indent=1)
            )


def calibrate_set(
    serving_function: Callable[[], Any],
    model: Any,
    convert: Any,
    representative_data: Any,
    *,
    allow_custom_ops: bool = False,
    representative_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CalibratedModels:
    """Calibrate the float model once and make from it ``ptq_int8``, ``ptq_mixed`` and
    the layer errors, as ``convert`` (a
    :class:`~model_maker.core.convert_options.ConvertOptions`) asks.

    ``ptq_int8`` made this way has the op list, weights and quantization of the
    converter's own full-integer result (TFLite runs the same MLIR quantizer on the
    same calibration), without a second tracing, freezing and calibration.

    Args:
      serving_function: builds the concrete serving function (called only when
        something is asked for: tracing costs seconds).
      model: the float Keras model (its layer names, the captured variables).
      convert: the conversion settings.
      representative_data: calibration images, any form QuantizationConfig takes.
      allow_custom_ops: the serving function holds a custom op (detection NMS).
      representative_transform: applied to each calibration image.

    Returns an empty :class:`CalibratedModels` when no calibrated variant is asked for.

    Raises:
      UsageError: a calibrated variant is asked for without representative data.
    """
    wants_mixed = "ptq_mixed" in convert.variants
    asked = [v for v in convert.variants if v in CALIBRATED_VARIANTS]
    if not asked:
        return CalibratedModels()
    if representative_data is None:
        raise UsageError(f"variant {asked[0]} needs representative data")
    config = QuantizationConfig.for_int8(
        representative_data,
        quantization_steps=convert.representative_samples,
        inference_input_type=convert.int8_input_type,
    )
    start = time.monotonic()
    calibrated = calibrate_concrete_function(
        serving_function(),
        model,
        config,
        allow_custom_ops=allow_custom_ops,
        representative_transform=representative_transform,
    )
    LOG.info("calibrated the float model in %.1f s", time.monotonic() - start)
    errors: list[LayerError] = []
    document = None
    if convert.measures_layer_errors:  # always with ptq_mixed (ConvertOptions checks)
        measured = time.monotonic()
        steps = config.replace(quantization_steps=convert.layer_error_samples)
        images = [batch[0] for batch in steps.representative_dataset(representative_transform)()]
        LOG.info("measuring the int8 error of every layer on %d images", len(images))
        errors = measure_layer_errors(calibrated, images, keras_layer_names(model))
        document = layer_errors_document(
            errors,
            variant="ptq_int8",
            samples=len(images),
            seconds=time.monotonic() - measured,
        )
        worst = ", ".join(f"{e.layer or e.tensor} {e.rmse_over_scale:.2f}" for e in errors[:3])
        LOG.info("worst int8 layers (RMSE in quantization steps): %s", worst)
    ptq = None
    if "ptq_int8" in convert.variants:
        ptq = quantize_calibrated(calibrated, input_type=convert.int8_input_type)
    if not wants_mixed:
        return CalibratedModels(tuple(errors), document, ptq)
    float_layers = select_float_layers(
        errors, convert.mixed_float_layers, convert.mixed_float_patterns
    )
    rule = (
        f"layers matching {list(convert.mixed_float_patterns)}"
        if convert.mixed_float_patterns
        else f"the {len(float_layers)} worst layers by {RANK_METRIC}"
    )
    mixed = quantize_calibrated(
        calibrated,
        input_type=convert.int8_input_type,
        float_tensors=[e.tensor for e in float_layers],
    )
    LOG.info("ptq_mixed keeps %s in float", rule)
    return CalibratedModels(tuple(errors), document, ptq, mixed, tuple(float_layers), rule)
