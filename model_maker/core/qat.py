"""Quantization-aware training (QAT) with TFMOT: hyper-parameters, quantize configs, scheme.

The scheme is TFMOT's default 8-bit scheme (the one the TFLite converter
expects) with three additions:

- depthwise kernels are fake-quantized per channel (TFMOT's default quantizer
  is per axis over the *last* kernel axis, the depth multiplier, so for the
  usual multiplier 1 it is one range for the whole kernel; the converter writes
  int8 depthwise kernels per channel anyway, so the coarser range only costs
  accuracy);
- :func:`rewrite_for_int8` first turns layers that would stay float in the
  converted graph (n-input ``Add``, ``Rescaling``) into equivalent layers that
  quantize;
- model-specific layers are registered with explicit configs by the caller
  (``extra_configs``), so an unknown layer is an error, never a silent skip.

Batch norm: TFMOT's layout transform puts no fake quant between a conv and its
batch norm and none between the batch norm and a following ReLU, and quantizes
the conv kernel per output channel before the batch-norm scale. The converter
folds the batch norm by multiplying each output channel's kernel (and scale)
by ``gamma / sqrt(var + eps)``; for symmetric per-channel quantization that
scaling commutes with rounding, so the int8 kernels the converter writes hold
exactly the fake-quantized values the QAT model trained with. This is why
kernels stay per channel (depthwise included) in this scheme.

Building a fake-quant model runs without AutoGraph
(``tf.autograph.experimental.do_not_convert``): tf_keras converts the ``call`` of
every non-Keras layer (TFMOT's wrappers among them) each time the layer is called
on symbolic inputs, and TFMOT's rewrite builds the model six times over. Their
control flow is on Python values (``smart_cond`` on the training flag), so the
graph is the same; the rewrite of EfficientDet-Lite0 went from 10.6 to 8.4 s. The
int8 rewrite and TFMOT's annotation are one build (``rewrite_for_int8(...,
annotate=True)``), not a build and a clone: 8.4 to 7.5 s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_annotate as _tfmot_annotate,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_layer as _tfmot_quantize_layer,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_wrapper as _tfmot_wrapper,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as _tfmot_configs,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry as _tfmot_registry,
)

from model_maker.core.errors import QatflowError
from model_maker.core.qat_hparams import QATHParams  # noqa: F401 - part of this module's API

tfq = tfmot.quantization.keras

#: Output-only fake quant (moving-average range, 8 bit asymmetric), TFMOT's config.
OutputQuantizeConfig = _tfmot_configs.Default8BitOutputQuantizeConfig
#: No fake quant at all: for layers fused into a neighbour or keeping their input's scale.
NoOpQuantizeConfig = _tfmot_configs.NoOpQuantizeConfig
#: Conv kernel per output channel + activation/output, TFMOT's config for Conv2D.
ConvQuantizeConfig = _tfmot_registry.Default8BitConvQuantizeConfig


class QATError(QatflowError):
    """A model that cannot be prepared for quantization-aware training."""


class DepthwiseKernelQuantizer(tfq.quantizers.LastValueQuantizer):
    """8-bit symmetric narrow-range fake quant of a depthwise kernel, one range per channel.

    A depthwise kernel is ``[kh, kw, in_channels, multiplier]``; TFLite's
    output channel ``c * multiplier + m`` is the converter's quantization axis.
    The kernel is viewed as ``[kh, kw, 1, in_channels * multiplier]`` so TFMOT's
    per-last-axis quantizer sees exactly those channels.
    """

    def __init__(self) -> None:
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, Any]:
        channels = int(tensor_shape[-2]) * int(tensor_shape[-1])
        return {
            "min_var": layer.add_weight(
                name + "_min",
                shape=(channels,),
                initializer=keras.initializers.Constant(-6.0),
                trainable=False,
            ),
            "max_var": layer.add_weight(
                name + "_max",
                shape=(channels,),
                initializer=keras.initializers.Constant(6.0),
                trainable=False,
            ),
        }

    def __call__(self, inputs: tf.Tensor, training: Any, weights: Any, **kwargs: Any) -> tf.Tensor:
        inputs = tf.convert_to_tensor(inputs)
        kh, kw, channels, multiplier = inputs.shape.as_list()
        flat = tf.reshape(inputs, [kh, kw, 1, channels * multiplier])
        flat = super().__call__(flat, training, weights, **kwargs)
        return tf.reshape(flat, [kh, kw, channels, multiplier])

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DepthwiseKernelQuantizer:
        return cls()


class DepthwiseConvQuantizeConfig(ConvQuantizeConfig):
    """TFMOT's conv config with the depthwise kernel quantized per channel.

    Args:
      weight_attrs: kernel attributes to fake-quantize (``depthwise_kernel``).
      activation_attrs: activation attributes (``activation``) or none.
      quantize_output: fake-quantize the layer's output.
    """

    def __init__(
        self,
        weight_attrs: list[str] | None = None,
        activation_attrs: list[str] | None = None,
        quantize_output: bool = False,
    ) -> None:
        super().__init__(
            ["depthwise_kernel"] if weight_attrs is None else list(weight_attrs),
            ["activation"] if activation_attrs is None else list(activation_attrs),
            quantize_output,
        )
        self.weight_quantizer = DepthwiseKernelQuantizer()

    def get_config(self) -> dict[str, Any]:
        return {
            "weight_attrs": self.weight_attrs,
            "activation_attrs": self.activation_attrs,
            "quantize_output": self.quantize_output,
        }


#: Layer types the qatflow scheme adds to TFMOT's registry, with the config factory.
#: A ``Rescaling`` is one of the two halves :func:`rewrite_for_int8` makes of one.
BUILTIN_EXTRA_CONFIGS: dict[type, Callable[[], tfq.QuantizeConfig]] = {
    keras.layers.DepthwiseConv2D: DepthwiseConvQuantizeConfig,
    keras.layers.Rescaling: OutputQuantizeConfig,
}

#: Name suffix of the multiply half of a rewritten ``Rescaling`` (the add half keeps the name).
RESCALING_SCALE_SUFFIX = "_scale"


class QatflowQuantizeRegistry(tfq.default_8bit.Default8BitQuantizeRegistry):
    """TFMOT's default 8-bit registry plus per-channel depthwise and extra layer types.

    Args:
      extra_configs: layer type -> factory of its QuantizeConfig; a new config
        per layer (TFMOT's transforms edit configs in place).
    """

    def __init__(
        self, extra_configs: Mapping[type, Callable[[], tfq.QuantizeConfig]] | None = None
    ) -> None:
        super().__init__()
        self._extra = {**BUILTIN_EXTRA_CONFIGS, **dict(extra_configs or {})}

    def supports(self, layer: keras.layers.Layer) -> bool:
        return type(layer) in self._extra or super().supports(layer)

    def get_quantize_config(self, layer: keras.layers.Layer) -> tfq.QuantizeConfig:
        factory = self._extra.get(type(layer))
        if factory is not None:
            return factory()
        return super().get_quantize_config(layer)


class QatflowQuantizeScheme(tfq.default_8bit.Default8BitQuantizeScheme):
    """TFMOT's default 8-bit layout transforms with :class:`QatflowQuantizeRegistry`."""

    def __init__(
        self, extra_configs: Mapping[type, Callable[[], tfq.QuantizeConfig]] | None = None
    ) -> None:
        super().__init__(disable_per_axis=False)
        self._extra_configs = dict(extra_configs or {})

    def get_quantize_registry(self) -> QatflowQuantizeRegistry:
        return QatflowQuantizeRegistry(self._extra_configs)


def quantize_custom_objects(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Objects a saved QAT model needs to load (pass to ``quantize_scope``)."""
    objects: dict[str, Any] = {
        "DepthwiseKernelQuantizer": DepthwiseKernelQuantizer,
        "DepthwiseConvQuantizeConfig": DepthwiseConvQuantizeConfig,
        "Default8BitConvQuantizeConfig": ConvQuantizeConfig,
        "Default8BitOutputQuantizeConfig": OutputQuantizeConfig,
        "NoOpQuantizeConfig": NoOpQuantizeConfig,
    }
    objects.update(extra or {})
    return objects


def unsupported_layers(
    model: keras.Model, extra_configs: Mapping[type, Callable[[], tfq.QuantizeConfig]] | None = None
) -> list[str]:
    """``"name (Class)"`` of every layer the qatflow scheme has no config for.

    A layer in TFMOT's ``QuantizeAnnotate`` is looked at inside its wrapper.
    """
    registry = QatflowQuantizeRegistry(extra_configs)
    out = []
    for outer in model.layers:
        layer = _unannotated(outer)
        if isinstance(layer, keras.layers.InputLayer) or registry.supports(layer):
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and _follows_conv(outer):
            continue  # TFMOT's conv + batch-norm transform handles it
        out.append(f"{layer.name} ({type(layer).__name__})")
    return out


def _unannotated(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.layer if isinstance(layer, _tfmot_annotate.QuantizeAnnotate) else layer


def _follows_conv(layer: keras.layers.Layer) -> bool:
    inbound = [
        parent for node in layer.inbound_nodes for parent in tf.nest.flatten(node.inbound_layers)
    ]
    return len(inbound) == 1 and isinstance(
        _unannotated(inbound[0]), keras.layers.Conv2D | keras.layers.DepthwiseConv2D
    )


def _layer_entry(class_name: str, config: dict[str, Any], inbound: list[Any]) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": class_name,
        "config": config,
        "registered_name": None,
        "name": config["name"],
        "inbound_nodes": [inbound],
    }


@tf.autograph.experimental.do_not_convert  # see the module doc
def rewrite_for_int8(
    model: keras.Model,
    custom_objects: Mapping[str, Any] | None = None,
    *,
    annotate: bool = False,
) -> keras.Model:
    """The same function as ``model``, built from layers that all quantize to int8 ops.

    Two rewrites of the functional config, both exact in float:

    - an ``Add`` of n > 2 inputs becomes a chain of two-input ``Add`` layers
      (``<name>_sum1``.. then ``<name>``): TFLite adds pairwise, and every
      partial sum is an int8 tensor that needs its own fake quant (BiFPN fusion);
    - ``Rescaling`` (``x * scale + offset``, the input normalisation) becomes
      two: ``<name>_scale`` (``x * scale``) then ``<name>`` (``x + offset``),
      each with its output fake-quantized. One ``Rescaling`` lowers to MUL +
      ADD with no range for the tensor between them, which the converter would
      leave in float; the two halves are the int8 MUL and ADD that
      post-training quantization writes. (They replaced a 1x1
      ``DepthwiseConv2D``, also exact, but at 320 px XNNPACK took 0.5 ms for
      it on three channels against 0.03 ms for MUL + ADD: 4% of the int8 file.)

    Weights are copied by layer name; ``model`` is untouched. With ``annotate``
    every layer but the inputs comes wrapped in TFMOT's ``QuantizeAnnotate`` (what
    ``quantize_annotate_model`` gives), built in the same pass: cloning the
    rewritten model to annotate it was a whole model build more (0.6 s for
    EfficientDet-Lite0). Call it inside ``quantize_scope`` then.
    """
    config = model.get_config()
    layers: list[dict[str, Any]] = []
    for entry in config["layers"]:
        class_name, inbound = entry["class_name"], entry["inbound_nodes"]
        if class_name == "Add" and len(inbound) == 1 and len(inbound[0]) > 2:
            name, inputs = entry["config"]["name"], inbound[0]
            previous = inputs[0]
            for k in range(1, len(inputs) - 1):
                partial = _layer_entry(
                    "Add",
                    {"name": f"{name}_sum{k}", "trainable": True, "dtype": "float32"},
                    [previous, inputs[k]],
                )
                layers.append(partial)
                previous = [partial["name"], 0, 0, {}]
            entry = {**entry, "inbound_nodes": [[previous, inputs[-1]]]}
            entry.pop("build_config", None)
        elif class_name == "Rescaling" and len(inbound) == 1:
            cfg = entry["config"]
            scale, offset = cfg["scale"], cfg["offset"]
            if not (_is_number(scale) and _is_number(offset)):
                raise QATError(f"{cfg['name']}: only scalar Rescaling scale/offset are supported")
            dtype = cfg.get("dtype", "float32")
            multiply = _layer_entry(
                "Rescaling",
                {
                    "name": f"{cfg['name']}{RESCALING_SCALE_SUFFIX}",
                    "trainable": False,
                    "dtype": dtype,
                    "scale": float(scale),
                    "offset": 0.0,
                },
                inbound[0],
            )
            layers.append(multiply)
            entry = _layer_entry(
                "Rescaling",
                {
                    "name": cfg["name"],
                    "trainable": False,
                    "dtype": dtype,
                    "scale": 1.0,
                    "offset": float(offset),
                },
                [[multiply["name"], 0, 0, {}]],
            )
        layers.append(entry)
    if annotate:
        layers = [_annotated(entry) for entry in layers]
    config = {**config, "layers": layers}
    rebuilt = keras.Model.from_config(config, custom_objects=dict(custom_objects or {}))
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt


def _annotated(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry``, a functional config's layer, wrapped in ``QuantizeAnnotate`` (inputs kept)."""
    if entry["class_name"] == "InputLayer":
        return entry
    inner = {k: v for k, v in entry.items() if k not in ("name", "inbound_nodes", "build_config")}
    cfg = entry["config"]
    return {
        "class_name": "QuantizeAnnotate",
        "config": {
            "name": cfg["name"],
            "trainable": cfg.get("trainable", True),
            "dtype": cfg.get("dtype", "float32"),
            "layer": inner,
            "quantize_config": None,
        },
        "name": entry["name"],
        "inbound_nodes": entry["inbound_nodes"],
    }


def _is_number(value: Any) -> bool:
    """True for a plain number (Rescaling may also hold per-channel lists)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@tf.autograph.experimental.do_not_convert  # see the module doc
def quantize_functional_model(
    model: keras.Model,
    extra_configs: Mapping[type, Callable[[], tfq.QuantizeConfig]] | None = None,
    custom_objects: Mapping[str, Any] | None = None,
) -> keras.Model:
    """Fake-quant copy of a functional tf_keras ``model`` (weights copied, ``model`` untouched).

    The model is passed through :func:`rewrite_for_int8`, then every layer is
    annotated and quantized by :class:`QatflowQuantizeScheme`.

    Args:
      model: functional model without shared layers or nested models.
      extra_configs: QuantizeConfig factories of model-specific layer types.
      custom_objects: custom layer classes by name (needed to clone the model).

    Raises:
      QATError: a layer has no QuantizeConfig (all are named), or a layer is
        shared (TFMOT's cloning would un-share it).
    """
    shared = [layer.name for layer in model.layers if len(layer.inbound_nodes) > 1]
    if shared:
        raise QATError(
            f"shared layers {shared} cannot go through TFMOT's cloning; "
            "give them a quantized layer that owns the shared weights"
        )
    objects = quantize_custom_objects(custom_objects)
    with tfq.quantize_scope(objects):
        annotated = rewrite_for_int8(model, objects, annotate=True)
        missing = unsupported_layers(annotated, extra_configs)
        if missing:
            raise QATError(
                "no QuantizeConfig for: " + ", ".join(missing) + " (register a config for the type)"
            )
        return tfq.quantize_apply(annotated, scheme=QatflowQuantizeScheme(extra_configs))


class _IdentityQuantizer(tfq.quantizers.Quantizer):
    """A quantizer that returns its input (stands in for a real one while fake quant is off)."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, Any]:
        return {}

    def __call__(self, inputs: tf.Tensor, training: Any, weights: Any, **kwargs: Any) -> tf.Tensor:
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {}


class _RangeObserver(tfq.quantizers.Quantizer):
    """Stands in for an activation quantizer: widens its range to the values seen (eager)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, Any]:
        return {}

    def __call__(self, inputs: tf.Tensor, training: Any, weights: Any, **kwargs: Any) -> tf.Tensor:
        low = tf.minimum(tf.reduce_min(inputs), 0.0)  # TFLite needs 0 inside the range
        high = tf.maximum(tf.reduce_max(inputs), 0.0)
        key = id(weights["min_var"])
        if key in self._seen:
            low = tf.minimum(low, weights["min_var"])
            high = tf.maximum(high, weights["max_var"])
        self._seen.add(key)
        weights["min_var"].assign(low)
        weights["max_var"].assign(high)
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {}


@contextlib.contextmanager
def _swapped_quantizers(
    model: keras.Model, weights: Any, activations: Any
) -> Iterator[list[tuple[tf.Variable, Any, Any]]]:
    """Replace weight / activation+output quantizers of every TFMOT wrapper in ``model``.

    TFMOT 0.8.1 has no switch for this: the quantizers that QuantizeWrapper,
    QuantizeLayer and QuantizeAwareActivation hold are swapped and restored.
    Yields the original (weight, quantizer, range variables) triples.
    """
    restore: list[Callable[[], None]] = []
    originals: list[tuple[tf.Variable, Any, Any]] = []
    try:
        for module in [model, *model.submodules]:
            if isinstance(module, _tfmot_wrapper.QuantizeWrapper) and module.built:
                weight_vars = list(module._weight_vars)
                outputs = list(module._output_quantizers)
                acts = [(qa, qa.quantizer) for qa in module._quantize_activations]
                originals.extend(weight_vars)
                module._weight_vars = [(w, weights, v) for w, _, v in weight_vars]
                module._output_quantizers = [activations for _ in outputs]
                for qa, _ in acts:
                    qa.quantizer = activations

                def _undo(m=module, wv=weight_vars, oq=outputs, acts=acts) -> None:
                    m._weight_vars = wv
                    m._output_quantizers = oq
                    for qa, q in acts:
                        qa.quantizer = q

                restore.append(_undo)
            elif (
                isinstance(module, _tfmot_quantize_layer.QuantizeLayer)
                and module.quantizer is not None
            ):
                original = module.quantizer
                module.quantizer = None if activations is _IDENTITY else activations

                def _undo_layer(m=module, q=original) -> None:
                    m.quantizer = q

                restore.append(_undo_layer)
        yield originals
    finally:
        for undo in reversed(restore):
            undo()


_IDENTITY = _IdentityQuantizer()


@contextlib.contextmanager
def fake_quant_disabled(model: keras.Model) -> Iterator[keras.Model]:
    """Within the block, every fake-quant op of ``model`` passes its input through.

    For eager calls (``model(x)``): compiled ``predict``/``fit`` functions
    traced before the block keep their quantizers. Used to check that a QAT
    model starts from its float model's function, and to separate the error
    of quantization from the rest when debugging.
    """
    with _swapped_quantizers(model, _IDENTITY, _IDENTITY):
        yield model


#: Pixels per calibration batch (16 images at 320 px). Calibration runs eagerly, so
#: each batch pays the dispatch of every op once: a few big batches cost less than
#: many small ones, and the ranges (min/max over all images) are the same.
CALIBRATION_BATCH_PIXELS = 16 * 320 * 320


def calibration_batch_size(image_size: int, images: int) -> int:
    """Images per calibration batch at ``image_size`` px, for ``images`` images in all."""
    return max(1, min(int(images), CALIBRATION_BATCH_PIXELS // (int(image_size) ** 2)))


def calibrate_fake_quant(model: keras.Model, batches: Iterable[Any]) -> int:
    """Set every fake-quant range of ``model`` from data before fine-tuning; return batches used.

    TFMOT starts activation ranges at [-6, 6] and moves them by an EMA with
    decay 0.999, so they need thousands of steps to fit the data; weight ranges
    are only set by a training step. This sets weight ranges from the weights
    and activation ranges to the min/max the float function (fake quant off)
    produces on ``batches`` (model inputs, in inference mode, eagerly), as
    post-training calibration would. Fine-tuning then starts from them.
    """
    count = 0
    with _swapped_quantizers(model, _IDENTITY, _RangeObserver()) as originals:
        for weight, quantizer, variables in originals:
            quantizer(weight, True, variables)  # a training call sets the range from the weight
        for batch in batches:
            model(batch, training=False)
            count += 1
    return count


@tf.autograph.experimental.do_not_convert  # see the module doc
def qat_model_from_config(
    config: Mapping[str, Any], custom_objects: Mapping[str, Any]
) -> keras.Model:
    """A fake-quant functional model built from its ``get_config()`` (new variables,
    in the scope of the strategy in force), inside TFMOT's ``quantize_scope``.

    ``custom_objects`` are the model's layers and quantize configs
    (:func:`quantize_custom_objects` plus the task's). The layers' ``build_config``
    is dropped: tf_keras would build each layer from it and again when the graph
    is rebuilt, and TFMOT's ``QuantizeLayer.build`` never marks itself built, so
    it would get a second set of range variables. Building on call is enough.
    """
    config = dict(config)
    config["layers"] = [
        {k: v for k, v in layer.items() if k != "build_config"} for layer in config["layers"]
    ]
    objects = dict(custom_objects)
    with tfq.quantize_scope(objects):
        return keras.Model.from_config(config, custom_objects=objects)
