"""Post-training quantization settings of the TFLite converter (Model Maker API).

A :class:`QuantizationConfig` names the converter flags of one kind of
TFLite model and maps them onto a ``tf.lite.TFLiteConverter``
(:meth:`QuantizationConfig.set_converter_with_quantization`). The class
methods are the presets of the Model Maker API:

* :meth:`~QuantizationConfig.for_dynamic`: int8 weights, float activations
  (``Optimize.DEFAULT`` only);
* :meth:`~QuantizationConfig.for_float16`: float16 weights;
* :meth:`~QuantizationConfig.for_int8`: full-integer quantization calibrated
  on ``representative_data`` (``TFLITE_BUILTINS_INT8`` kernels only).

:func:`get_default_quantization_config` is the detector default: full int8,
``uint8`` input, float32 outputs (the detection post-processing op produces
float tensors), as ``EfficientDetSpec.get_default_quantization_config`` did.

Types may be given as TensorFlow objects (``tf.uint8``,
``tf.lite.OpsSet.TFLITE_BUILTINS_INT8``, ``tf.lite.Optimize.DEFAULT``) or as
their names (``"uint8"``, ``"TFLITE_BUILTINS_INT8"``, ``"DEFAULT"``); they are
stored as names, so a config is plain data until it is applied.

``representative_data`` may be an iterable of images (numpy ``[H, W, 3]`` or
``[1, H, W, 3]``, ``(image, label)`` pairs, or a ``tf.data.Dataset`` of
either, batched or not), or a zero-argument callable returning one. At most
``quantization_steps`` images are used, one per calibration step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model_maker.core.convert_options import (  # noqa: F401 - API
    INT8_INPUT_TYPES,
    INT8_VARIANTS,
    VARIANTS,
    ConvertOptions,
)

#: Calibration images used when ``quantization_steps`` is not given.
DEFAULT_QUANTIZATION_STEPS = 500

IO_TYPES = ("float32", "uint8", "int8")
OPS_SETS = ("TFLITE_BUILTINS", "TFLITE_BUILTINS_INT8", "SELECT_TF_OPS")
OPTIMIZATIONS = ("DEFAULT", "OPTIMIZE_FOR_SIZE", "OPTIMIZE_FOR_LATENCY", "EXPERIMENTAL_SPARSITY")
SUPPORTED_TYPES = ("float16", "int8", "float32")


def _name(value: Any) -> str:
    """``tf.uint8`` -> ``"uint8"``, ``OpsSet.TFLITE_BUILTINS`` -> ``"TFLITE_BUILTINS"``."""
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    raise ValueError(f"cannot read a type name from {value!r}")


def _names(values: Any) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str) or not isinstance(values, Iterable):
        values = [values]
    return tuple(_name(v) for v in values)


def _check(kind: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    for value in values:
        if value not in allowed:
            raise ValueError(f"{kind} {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class QuantizationConfig:
    """Converter flags of one TFLite model kind.

    Attributes:
      optimizations: ``tf.lite.Optimize`` names; empty converts without optimisation.
      representative_data: calibration images for full-integer quantization (see
        the module docstring for the accepted forms); None for no calibration.
      quantization_steps: calibration images used (default
        ``DEFAULT_QUANTIZATION_STEPS`` when ``representative_data`` is set).
      inference_input_type: input tensor type (float32, uint8 or int8); None keeps float32.
      inference_output_type: output tensor type; None keeps float32.
      supported_ops: ``tf.lite.OpsSet`` names the model may use; empty keeps
        the converter default (``TFLITE_BUILTINS``).
      supported_types: constant types of the target (``float16`` for fp16 weights).
    """

    optimizations: tuple[str, ...] = ("DEFAULT",)
    representative_data: Any = field(default=None, compare=False, repr=False)
    quantization_steps: int | None = None
    inference_input_type: str | None = None
    inference_output_type: str | None = None
    supported_ops: tuple[str, ...] = ()
    supported_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "optimizations", _names(self.optimizations))
        set_(self, "supported_ops", _names(self.supported_ops))
        set_(self, "supported_types", _names(self.supported_types))
        for key in ("inference_input_type", "inference_output_type"):
            value = getattr(self, key)
            if value is not None:
                set_(self, key, _name(value))
                _check(key, [getattr(self, key)], IO_TYPES)
        _check("optimization", self.optimizations, OPTIMIZATIONS)
        _check("supported_ops", self.supported_ops, OPS_SETS)
        _check("supported_types", self.supported_types, SUPPORTED_TYPES)
        if self.representative_data is not None and self.quantization_steps is None:
            set_(self, "quantization_steps", DEFAULT_QUANTIZATION_STEPS)
        if self.quantization_steps is not None and self.quantization_steps < 1:
            raise ValueError(
                f"quantization_steps must be at least 1, got {self.quantization_steps}"
            )
        integer_io = {self.inference_input_type, self.inference_output_type} & {"uint8", "int8"}
        if integer_io and self.representative_data is None:
            raise ValueError(
                f"integer input/output types ({', '.join(sorted(integer_io))}) need "
                "representative_data for calibration"
            )
        if self.is_full_integer and not self.optimizations:
            raise ValueError("representative_data needs optimizations (e.g. DEFAULT)")

    # --- presets (Model Maker API) --------------------------------------------

    @classmethod
    def for_dynamic(cls) -> QuantizationConfig:
        """Dynamic-range quantization: int8 weights, float activations and I/O."""
        return cls(optimizations=("DEFAULT",))

    @classmethod
    def for_float16(cls) -> QuantizationConfig:
        """Float16 weights (dequantized to float32 on CPU, native on GPU)."""
        return cls(optimizations=("DEFAULT",), supported_types=("float16",))

    @classmethod
    def for_int8(
        cls,
        representative_data: Any,
        quantization_steps: int = DEFAULT_QUANTIZATION_STEPS,
        inference_input_type: Any = "uint8",
        inference_output_type: Any = "float32",
        supported_ops: Any = ("TFLITE_BUILTINS_INT8",),
    ) -> QuantizationConfig:
        """Full-integer quantization calibrated on ``representative_data``.

        Unlike the Model Maker default (uint8 outputs), outputs stay float32:
        every output of a detector here comes from the float post-processing op.
        """
        if representative_data is None:
            raise ValueError("for_int8 needs representative_data")
        return cls(
            optimizations=("DEFAULT",),
            representative_data=representative_data,
            quantization_steps=quantization_steps,
            inference_input_type=inference_input_type,
            inference_output_type=inference_output_type,
            supported_ops=supported_ops,
        )

    # --- properties -------------------------------------------------------------

    @property
    def is_full_integer(self) -> bool:
        """True when activations are calibrated (representative data given)."""
        return self.representative_data is not None

    @property
    def input_type(self) -> str:
        """The input tensor type the converted model will have."""
        return self.inference_input_type or "float32"

    def replace(self, **changes: Any) -> QuantizationConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The flags as plain data (for manifests and logs; no representative data)."""
        return {
            "optimizations": list(self.optimizations),
            "quantization_steps": self.quantization_steps,
            "inference_input_type": self.input_type,
            "inference_output_type": self.inference_output_type or "float32",
            "supported_ops": list(self.supported_ops),
            "supported_types": list(self.supported_types),
            "calibrated": self.is_full_integer,
        }

    # --- calibration data ----------------------------------------------------------

    def representative_dataset(
        self, transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> Callable[[], Iterator[list[np.ndarray]]]:
        """A generator function for ``converter.representative_dataset``.

        Each step yields ``[image]`` with ``image`` float32 ``[1, H, W, C]``,
        at most ``quantization_steps`` of them. ``transform`` (if given) maps
        each ``[1, H, W, C]`` image before it is yielded.

        Raises:
          ValueError: no representative data, or it yields no image.
        """
        if self.representative_data is None:
            raise ValueError("this QuantizationConfig has no representative_data")
        data, steps = self.representative_data, int(self.quantization_steps or 0)

        def generate() -> Iterator[list[np.ndarray]]:
            count = 0
            for image in _iterate_images(data):
                if count >= steps:
                    return
                image = image if transform is None else transform(image)
                yield [np.asarray(image, np.float32)]
                count += 1
            if count == 0:
                raise ValueError("representative_data yielded no image")

        return generate

    # --- converter ---------------------------------------------------------------

    def set_converter_with_quantization(self, converter: Any, **kwargs: Any) -> Any:
        """Set ``converter``'s quantization flags from this config; return it.

        Args:
          converter: a ``tf.lite.TFLiteConverter``.
          **kwargs: ``transform`` for :meth:`representative_dataset`.
        """
        # deferred: TensorFlow takes seconds to import; only this path needs it
        import tensorflow as tf

        converter.optimizations = [getattr(tf.lite.Optimize, o) for o in self.optimizations]
        if self.is_full_integer:
            converter.representative_dataset = tf.lite.RepresentativeDataset(
                self.representative_dataset(kwargs.get("transform"))
            )
        if self.inference_input_type:
            converter.inference_input_type = tf.dtypes.as_dtype(self.inference_input_type)
        if self.inference_output_type:
            converter.inference_output_type = tf.dtypes.as_dtype(self.inference_output_type)
        if self.supported_ops:
            converter.target_spec.supported_ops = [
                getattr(tf.lite.OpsSet, o) for o in self.supported_ops
            ]
        if self.supported_types:
            converter.target_spec.supported_types = [
                tf.dtypes.as_dtype(t) for t in self.supported_types
            ]
        return converter


def _as_numpy(value: Any) -> np.ndarray:
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def _iterate_images(data: Any) -> Iterator[np.ndarray]:
    """``[1, H, W, C]`` float arrays from any of the accepted forms, one image at a time."""
    if callable(data) and not hasattr(data, "__iter__"):
        data = data()
    for item in data:
        if isinstance(item, tuple | list) and item and not isinstance(item, np.ndarray):
            item = item[0]  # (image, label) or [image]
        if isinstance(item, dict):
            item = item["image"] if "image" in item else item["images"]
        array = _as_numpy(item).astype(np.float32)
        if array.ndim == 3:
            yield array[None]
        elif array.ndim == 4:
            for image in array:  # a batch: one calibration step per image
                yield image[None]
        else:
            raise ValueError(
                f"representative image must be [H, W, C] or [B, H, W, C], got {array.shape}"
            )


def get_default_quantization_config(
    representative_data: Any,
    quantization_steps: int = DEFAULT_QUANTIZATION_STEPS,
    inference_input_type: Any = "uint8",
) -> QuantizationConfig:
    """The detector default: full int8 with ``TFLITE_BUILTINS_INT8`` kernels, float outputs.

    The detection post-processing op is a custom op, so it is allowed beside
    the int8 builtins (the converter's ``allow_custom_ops``), not through
    ``TFLITE_BUILTINS``.
    """
    return QuantizationConfig.for_int8(
        representative_data,
        quantization_steps=quantization_steps,
        inference_input_type=inference_input_type,
        inference_output_type="float32",
        supported_ops=("TFLITE_BUILTINS_INT8",),
    )


#: TFLite variants of the pipeline (``convert.variants``) and how each is quantized.
def quantization_config_for_variant(
    variant: str,
    representative_data: Any = None,
    *,
    quantization_steps: int = DEFAULT_QUANTIZATION_STEPS,
    inference_input_type: str = "uint8",
) -> QuantizationConfig | None:
    """The quantization of a pipeline variant; None for ``float32``.

    ``ptq_int8`` and ``qat_int8`` both calibrate on ``representative_data``:
    for the QAT model the fake-quant ranges learnt in training take
    precedence, and calibration only fills tensors without them (the model
    input, the sigmoid after the class logits).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r} (known: {', '.join(VARIANTS)})")
    if variant == "float32":
        return None
    if variant == "float16":
        return QuantizationConfig.for_float16()
    if variant == "dynamic_range":
        return QuantizationConfig.for_dynamic()
    if representative_data is None:
        raise ValueError(f"variant {variant} needs representative data")
    return get_default_quantization_config(
        representative_data, quantization_steps, inference_input_type
    )
