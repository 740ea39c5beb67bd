"""TFLite conversion of a serving function or Keras model, and inspection of the result.

:func:`convert_concrete_function` / :func:`convert_keras_model` run the
TFLite converter with the flags of a
:class:`~model_maker.core.quantization.QuantizationConfig` (None: plain float32).

:func:`describe_tflite` reads a flatbuffer with the LiteRT interpreter and
returns its input and its outputs by signature name (the order of
``get_output_details()`` has changed across TF releases, so names are what
consumers rely on). :func:`list_ops` reads the flatbuffer itself (operators
with their input/output tensor types) so tests and tools can check e.g. that
every convolution of an int8 model has int8 weights.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model_maker.core.quantization import QuantizationConfig

LOG = logging.getLogger("qatflow")

#: Operators whose second input is a weight tensor (kernel).
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "CONV_3D")


def _convert(
    converter: Any, quantization_config: QuantizationConfig | None, **kwargs: Any
) -> bytes:
    if quantization_config is not None:
        quantization_config.set_converter_with_quantization(converter, **kwargs)
    return converter.convert()


def variables_of(trackable: Any) -> Any:
    """A bare ``tf.Module`` holding only ``trackable``'s variables, to convert with.

    ``TFLiteConverter.from_concrete_functions`` saves its trackable as a SavedModel
    first; for a Keras model that traces every layer's call functions for Keras
    serialization, which TFLite never reads: about 80% of converting EfficientDet-
    Lite0 (27 s of 33 s at 128 px). The function only needs its captured variables,
    so the converter gets those alone; the flatbuffer is byte for byte the same.
    """
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    if trackable is None or isinstance(trackable, tf.Variable):
        return trackable
    holder = tf.Module()
    holder.captured_variables = list(trackable.variables)
    return holder


def convert_concrete_function(
    concrete_function: Any,
    trackable: Any = None,
    quantization_config: QuantizationConfig | None = None,
    *,
    allow_custom_ops: bool = False,
    representative_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> bytes:
    """Convert a serving ``tf.function``'s concrete function to a TFLite flatbuffer.

    Args:
      concrete_function: ``fn.get_concrete_function()`` with fixed input shapes;
        a dict of outputs names the signature's outputs.
      trackable: object owning the variables the function captures (Keras
        model or ``tf.Module``); only its variables are handed to the converter
        (:func:`variables_of`).
      quantization_config: converter flags; None converts to float32.
      allow_custom_ops: keep custom ops (``TFLite_Detection_PostProcess`` is one).
      representative_transform: applied to each calibration image
        (see :meth:`QuantizationConfig.representative_dataset`).
    """
    converter = concrete_function_converter(concrete_function, trackable, allow_custom_ops)
    return _convert(converter, quantization_config, transform=representative_transform)


def concrete_function_converter(
    concrete_function: Any, trackable: Any = None, allow_custom_ops: bool = False
) -> Any:
    """A ``TFLiteConverter`` of a serving function, given only ``trackable``'s variables."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [concrete_function], variables_of(trackable)
    )
    converter.allow_custom_ops = allow_custom_ops
    return converter


def convert_keras_model(
    model: Any,
    quantization_config: QuantizationConfig | None = None,
    *,
    representative_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> bytes:
    """Convert a tf_keras model (its ``call`` as the serving signature)."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return _convert(converter, quantization_config, transform=representative_transform)


# --- inspection ----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """One input or output tensor of a TFLite model.

    Attributes:
      name: signature name (tensor name when the model has no signature).
      shape: static shape.
      dtype: numpy dtype name (float32, uint8, int8, ...).
      scale: quantization scale (0.0 for float tensors).
      zero_point: quantization zero point (0 for float tensors).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


@dataclass(frozen=True)
class TFLiteDescription:
    """Inputs and outputs of a TFLite model, by signature name.

    Attributes:
      signature: signature key ("" when the model has none).
      inputs: input tensors, sorted by name.
      outputs: output tensors, sorted by name.
    """

    signature: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def output(self, name: str) -> TensorInfo:
        for info in self.outputs:
            if info.name == name:
                return info
        raise KeyError(f"no output {name!r} (outputs: {[o.name for o in self.outputs]})")


def _tensor_info(name: str, detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=name,
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def describe_tflite(model_content: bytes) -> TFLiteDescription:
    """Input/output names, shapes, dtypes and quantization of a TFLite model (via LiteRT)."""
    # deferred: LiteRT loads only where a model is run or inspected
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_content)
    signatures = interpreter.get_signature_list()
    if signatures:
        key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
        runner = interpreter.get_signature_runner(key)
        ins = runner.get_input_details()
        outs = runner.get_output_details()
    else:
        key = ""
        ins = {d["name"]: d for d in interpreter.get_input_details()}
        outs = {d["name"]: d for d in interpreter.get_output_details()}
    return TFLiteDescription(
        signature=key,
        inputs=tuple(_tensor_info(n, ins[n]) for n in sorted(ins)),
        outputs=tuple(_tensor_info(n, outs[n]) for n in sorted(outs)),
    )


@dataclass(frozen=True)
class OpInfo:
    """One operator of a TFLite model.

    Attributes:
      name: builtin name (``CONV_2D``) or the custom op's code
        (``TFLite_Detection_PostProcess``).
      input_types: tensor type names of the inputs (``INT8``, ``FLOAT32``, ...).
      output_types: tensor type names of the outputs.
      custom: True for a custom op.
    """

    name: str
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    custom: bool = False

    @property
    def weight_type(self) -> str | None:
        """Type of the kernel of a conv/fully-connected op, else None."""
        if self.name in WEIGHTED_OPS and len(self.input_types) > 1:
            return self.input_types[1]
        return None


def list_ops(model_content: bytes) -> list[OpInfo]:
    """The operators of the main subgraph in execution order."""
    # deferred: LiteRT loads only where a model is run or inspected
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_content))
    subgraph = model.subgraphs[0]
    ops = []
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
        custom = builtin == schema.BuiltinOperator.CUSTOM
        if custom:
            raw = code.customCode
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
        else:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)

        def types(indices: Any) -> tuple[str, ...]:
            return tuple(
                flatbuffer_utils.type_to_name(subgraph.tensors[i].type)
                for i in (indices if indices is not None else [])
                if i >= 0
            )

        ops.append(OpInfo(name, types(op.inputs), types(op.outputs), custom))
    return ops


def pin_pixel_range(image: np.ndarray) -> np.ndarray:
    """Copy of a ``[1, H, W, 3]`` calibration image with one pixel 0 and one 255.

    Calibration then sees the full pixel range at the input, so a uint8 input
    gets scale 1.0 and zero point 0 (int8: zero point -128).
    """
    out = np.array(image, np.float32, copy=True)
    out[0, 0, 0, :] = 0.0
    out[0, 0, -1, :] = 255.0
    return out
