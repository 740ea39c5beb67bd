"""Quantization-aware EfficientDet-Lite: the float model with TFMOT fake quant.

:func:`quantize_efficientdet` splits the float model at the BiFPN outputs:

- the trunk (normalisation, backbone, BiFPN) goes through TFMOT's
  ``quantize_apply`` with :class:`~model_maker.core.qat.QatflowQuantizeScheme`
  (conv + BN (+ ReLU6) fused, kernels per channel, fake quant on every
  activation the int8 graph quantizes);
- the class and box nets apply one conv layer to all five levels, which
  TFMOT's cloning cannot keep (it would give each level its own copy), so each
  becomes a :class:`QuantizedSharedHead`: one layer that owns the shared,
  fake-quantized depthwise/pointwise kernels and the per-level batch norms,
  built from TFMOT's QuantizeWrapperV2 and configs (the pattern of TF Model
  Garden's QAT RetinaNet head). It ends with the float model's reshape and
  concatenation, so its output is ``class_logits`` [B, A, C] or
  ``box_encodings`` [B, A, 4]; the logits are fake-quantized, the sigmoid,
  box decoding and NMS stay in the TFLite post-processing op.

All weights are copied from the float model, so with fake quant disabled
(:func:`~model_maker.core.qat.fake_quant_disabled`) the QAT model computes the
float model's function.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from model_maker.core.qat import (
    ConvQuantizeConfig,
    DepthwiseConvQuantizeConfig,
    NoOpQuantizeConfig,
    OutputQuantizeConfig,
    QATError,
    qat_model_from_config,
    quantize_custom_objects,
    quantize_functional_model,
)
from model_maker.object_detector.model import BOX_OUTPUT, CLASS_OUTPUT
from model_maker.object_detector.model import custom_objects as model_custom_objects
from model_maker.object_detector.model_io import (
    KERAS_SUBDIR,
    TrainedModelConfig,
    read_trained_config,
)
from model_maker.object_detector.nearest_upsampling import NearestUpsampling

tfq = tfmot.quantization.keras

#: Saved form of a QAT model, beside the Trainer's ``keras/config.json``.
QAT_MODEL_FILE = "qat_model.json"
QAT_WEIGHTS_FILE = "qat_weights.h5"

#: Float head layer-name prefixes (model.PART_PATTERNS) -> QAT output name.
HEADS: dict[str, str] = {"class_net": CLASS_OUTPUT, "box_net": BOX_OUTPUT}

#: Model-specific layer types and their QuantizeConfig (every other type is TFMOT's or core's).
EXTRA_CONFIGS: dict[type, Any] = {
    # Copies pixels with reshapes/concats: TFLite keeps the input's scale, the input
    # is already fake-quantized, so a second range would only add a requantize.
    NearestUpsampling: NoOpQuantizeConfig,
}

#: Layer types that may carry no fake quant of their own, and why.
ALLOWED_UNQUANTIZED: dict[str, str] = {
    "InputLayer": "raw pixels; the QuantizeLayer right after it quantizes them",
    "BatchNormalization": "folded into the preceding conv; the fake quant follows the ReLU6",
    "Add": "the following ReLU6 is fused into ADD; the ReLU6 output is fake-quantized",
    "MaxPooling2D": "int8 MAX_POOL_2D keeps its input's scale (input already quantized)",
    "NearestUpsampling": "reshape/concat copies keep their input's scale",
    "Reshape": "moved into QuantizedSharedHead: reshape keeps the scale of the quantized logits",
    "Concatenate": "moved into QuantizedSharedHead: concat of logits sharing one quantizer",
}


def _conv_quantized(
    layer: keras.layers.Layer, config: tfq.QuantizeConfig, name: str
) -> tfq.QuantizeWrapperV2:
    return tfq.QuantizeWrapperV2(layer, config, name=name)


@keras.utils.register_keras_serializable(package="qatflow")
class QuantizedSharedHead(keras.layers.Layer):
    """EfficientDet class or box net with fake quant, kernels shared across levels.

    For each level: ``repeats`` x (depthwise 3x3 -> [fq] -> pointwise 1x1 ->
    per-level BN -> ReLU6 -> [fq]), then the prediction depthwise -> [fq] ->
    pointwise -> [fq]; each level's map is reshaped to [B, H*W*anchors,
    channels] and the levels concatenated (min level first).

    Args:
      head_name: float layer-name prefix (``class_net``/``box_net``); sub-layers
        keep the float names, so weights map one to one.
      levels: feature levels, in the order of the inputs.
      num_filters: channels of the intermediate convs.
      repeats: intermediate separable convs.
      num_anchors: anchors per location.
      channels: outputs per anchor (num_classes or 4).
      bn_momentum: batch-norm momentum.
      bn_epsilon: batch-norm epsilon.
    """

    def __init__(
        self,
        head_name: str,
        levels: Sequence[int],
        num_filters: int,
        repeats: int,
        num_anchors: int,
        channels: int,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.head_name = head_name
        self.levels = [int(v) for v in levels]
        self.num_filters = int(num_filters)
        self.repeats = int(repeats)
        self.num_anchors = int(num_anchors)
        self.channels = int(channels)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        n = self.head_name
        self.depthwise = []
        self.pointwise = []
        for i in range(self.repeats):
            self.depthwise.append(self._depthwise(f"{n}_conv{i}_depthwise"))
            self.pointwise.append(
                _conv_quantized(
                    keras.layers.Conv2D(self.num_filters, 1, name=f"{n}_conv{i}_pointwise"),
                    ConvQuantizeConfig(["kernel"], [], False),  # BN follows: no fake quant
                    f"quant_{n}_conv{i}_pointwise",
                )
            )
        self.norms: list[list[tfq.QuantizeWrapperV2]] = []
        self.relus: list[list[tfq.QuantizeWrapperV2]] = []
        for level in self.levels:
            norms, relus = [], []
            for i in range(self.repeats):
                bn = keras.layers.BatchNormalization(
                    momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon,
                    name=f"{n}_conv{i}_bn_p{level}",
                )
                norms.append(_conv_quantized(bn, NoOpQuantizeConfig(), f"quant_{bn.name}"))
                relu = keras.layers.ReLU(6.0, name=f"{n}_conv{i}_relu6_p{level}")
                relus.append(_conv_quantized(relu, OutputQuantizeConfig(), f"quant_{relu.name}"))
            self.norms.append(norms)
            self.relus.append(relus)
        self.predict_depthwise = self._depthwise(f"{n}_predict_depthwise")
        self.predict_pointwise = _conv_quantized(
            keras.layers.Conv2D(self.num_anchors * self.channels, 1, name=f"{n}_predict_pointwise"),
            ConvQuantizeConfig(["kernel"], [], True),  # quantized logits
            f"quant_{n}_predict_pointwise",
        )

    @staticmethod
    def _depthwise(name: str) -> tfq.QuantizeWrapperV2:
        layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name)
        # The tensor between depthwise and pointwise is int8 in TFLite: quantize the output.
        return _conv_quantized(
            layer, DepthwiseConvQuantizeConfig(["depthwise_kernel"], [], True), f"quant_{name}"
        )

    def build(self, input_shape: Any) -> None:
        # The float layers are built here (not lazily in call) so their weights
        # can be set before the first call, which swaps kernels for fake-quant tensors.
        shapes = [tf.TensorShape(s) for s in input_shape]
        if len(shapes) != len(self.levels):
            raise ValueError(f"{self.name}: {len(shapes)} inputs for levels {self.levels}")
        channels = int(shapes[0][-1])
        for i in range(self.repeats):
            in_channels = channels if i == 0 else self.num_filters
            self._build_inner(self.depthwise[i], in_channels)
            self._build_inner(self.pointwise[i], in_channels)
            for norms in self.norms:
                self._build_inner(norms[i], self.num_filters)
        last = channels if self.repeats == 0 else self.num_filters
        self._build_inner(self.predict_depthwise, last)
        self._build_inner(self.predict_pointwise, last)
        super().build(input_shape)

    def _build_inner(self, wrapper: tfq.QuantizeWrapperV2, channels: int) -> None:
        # Variables named <head>/<wrapper>/<weight>, as a lazy build inside call would
        # (Keras enters the <head> scope when it builds the layer on first call).
        with tf.name_scope(wrapper.name):
            wrapper.layer.build(tf.TensorShape([None, None, None, channels]))

    def call(self, inputs: Sequence[tf.Tensor], training: Any = None) -> tf.Tensor:
        if len(inputs) != len(self.levels):
            raise ValueError(f"{self.name}: {len(inputs)} inputs for levels {self.levels}")
        outputs = []
        for index, x in enumerate(inputs):
            for i in range(self.repeats):
                x = self.depthwise[i](x, training=training)
                x = self.pointwise[i](x, training=training)
                x = self.norms[index][i](x, training=training)
                x = self.relus[index][i](x, training=training)
            x = self.predict_depthwise(x, training=training)
            x = self.predict_pointwise(x, training=training)
            outputs.append(
                tf.reshape(x, [-1, x.shape[1] * x.shape[2] * self.num_anchors, self.channels])
            )
        return tf.concat(outputs, axis=1)

    def float_layers(self) -> dict[str, keras.layers.Layer]:
        """Float layer name -> the inner layer holding its weights here."""
        wrappers = [
            *self.depthwise,
            *self.pointwise,
            self.predict_depthwise,
            self.predict_pointwise,
        ]
        wrappers += [w for per_level in (*self.norms, *self.relus) for w in per_level]
        return {w.layer.name: w.layer for w in wrappers}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "head_name": self.head_name,
                "levels": self.levels,
                "num_filters": self.num_filters,
                "repeats": self.repeats,
                "num_anchors": self.num_anchors,
                "channels": self.channels,
                "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon,
            }
        )
        return config


def qat_custom_objects() -> dict[str, Any]:
    """Every object a saved QAT EfficientDet needs (use inside ``quantize_scope``)."""
    return quantize_custom_objects(
        {**model_custom_objects(), "QuantizedSharedHead": QuantizedSharedHead}
    )


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return model.get_layer(name)
    except ValueError:
        raise QATError(f"{model.name}: expected a layer {name!r} (heads.py naming)") from None


def _node_of(layer: keras.layers.Layer, output: Any) -> int:
    for index in range(len(layer.inbound_nodes)):
        if layer.get_output_at(index) is output:
            return index
    raise QATError(f"{layer.name}: tensor {output} is none of its outputs")


def _head_spec(model: keras.Model, head: str) -> tuple[dict[str, Any], list[Any]]:
    """Head constructor arguments and the head's input tensor per level, from the float model."""
    names = [layer.name for layer in model.layers]
    repeats = 0
    while f"{head}_conv{repeats}_depthwise" in names:
        repeats += 1
    prefix = f"{head}_conv0_bn_p"
    levels = sorted(int(n[len(prefix) :]) for n in names if n.startswith(prefix))
    if not repeats or not levels:
        raise QATError(f"{model.name}: no {head} layers found (heads.py naming expected)")
    depthwise = _layer(model, f"{head}_conv0_depthwise")
    pointwise = _layer(model, f"{head}_conv0_pointwise")
    features = []
    for level in levels:
        bn = _layer(model, f"{head}_conv0_bn_p{level}")
        dw_out = pointwise.get_input_at(_node_of(pointwise, bn.input))
        features.append(depthwise.get_input_at(_node_of(depthwise, dw_out)))
    predict = _layer(model, f"{head}_predict_pointwise")
    first_bn = _layer(model, f"{prefix}{levels[0]}")
    reshape = _layer(model, f"{HEADS[head]}_p{levels[0]}")
    channels = int(reshape.output_shape[-1])
    spec = {
        "head_name": head,
        "levels": levels,
        "num_filters": int(pointwise.filters),
        "repeats": repeats,
        "num_anchors": int(predict.filters) // channels,
        "channels": channels,
        "bn_momentum": float(first_bn.momentum),
        "bn_epsilon": float(first_bn.epsilon),
    }
    return spec, features


@tf.autograph.experimental.do_not_convert  # see model_maker.core.qat
def quantize_efficientdet(float_model: keras.Model) -> keras.Model:
    """Fake-quant EfficientDet-Lite starting from ``float_model``'s weights.

    Args:
      float_model: the functional model of
        :func:`~model_maker.object_detector.model.build_efficientdet_lite`
        (left untouched).

    Returns:
      A functional model with the same input and outputs
      ``[class_logits [B, A, C], box_encodings [B, A, 4]]``.

    Raises:
      QATError: the model does not have the expected head structure, or holds
        a layer without QuantizeConfig.
    """
    specs, features = {}, None
    for head in HEADS:
        spec, head_features = _head_spec(float_model, head)
        if features is not None and any(
            a is not b for a, b in zip(features, head_features, strict=True)
        ):
            raise QATError("class and box nets read different feature maps")
        specs[head], features = spec, head_features
    trunk = keras.Model(float_model.inputs, features, name=f"{float_model.name}_trunk")
    qat_trunk = quantize_functional_model(trunk, EXTRA_CONFIGS, model_custom_objects())
    outputs = []
    for head, output_name in HEADS.items():
        layer = QuantizedSharedHead(**specs[head], name=output_name)
        with tf.name_scope(layer.name):
            layer.build([t.shape for t in qat_trunk.outputs])
        for name, inner in layer.float_layers().items():
            inner.set_weights(_layer(float_model, name).get_weights())
        outputs.append(layer(qat_trunk.outputs))
    return keras.Model(qat_trunk.inputs, outputs, name=f"{float_model.name}_qat")


def fake_quant_points(layer: keras.layers.Layer) -> list[str]:
    """What a TFMOT wrapper fake-quantizes: ``kernel``, ``output``, ``post_activation``...

    Read from the quantizer range variables (``<what>_min``) the wrapper owns.
    """
    points = []
    for weight in layer.weights:
        leaf = weight.name.split("/")[-1].split(":")[0]
        if leaf.endswith("_min"):
            points.append(leaf[: -len("_min")])
    return sorted(set(points))


def _consumers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    return [node.outbound_layer for node in layer.outbound_nodes]


def _fused_into_relu(wrapper: keras.layers.Layer) -> bool:
    consumers = _consumers(wrapper)
    return (
        len(consumers) == 1
        and isinstance(getattr(consumers[0], "layer", None), keras.layers.ReLU)
        and "output" in fake_quant_points(consumers[0])
    )


def quantization_coverage(float_model: keras.Model, qat_model: keras.Model) -> dict[str, str]:
    """How each layer of ``float_model`` is quantized in ``qat_model``.

    Returns float layer name -> ``"quantized: <points>"`` (its fake-quant
    points), ``"allowed: <reason>"`` (no fake quant of its own, for the reason
    in :data:`ALLOWED_UNQUANTIZED`, checked where the reason is a fusion) or
    ``"NOT QUANTIZED"`` / ``"MISSING"``.
    """
    wrappers: dict[str, keras.layers.Layer] = {}
    for module in qat_model.submodules:
        inner = getattr(module, "layer", None)
        if isinstance(module, tfq.QuantizeWrapper) and inner is not None:
            wrappers[inner.name] = module
    out = {}
    for layer in float_model.layers:
        kind = type(layer).__name__
        wrapper = wrappers.get(layer.name)
        points = fake_quant_points(wrapper) if wrapper is not None else []
        if points:
            out[layer.name] = "quantized: " + ", ".join(points)
        elif kind not in ALLOWED_UNQUANTIZED:
            out[layer.name] = "NOT QUANTIZED" if wrapper is not None else "MISSING"
        elif kind in ("Add", "BatchNormalization") and not (
            wrapper is not None and (_fused_into_relu(wrapper) or _in_head(wrapper, qat_model))
        ):
            out[layer.name] = "NOT QUANTIZED"
        else:
            out[layer.name] = "allowed: " + ALLOWED_UNQUANTIZED[kind]
    return out


def _in_head(wrapper: keras.layers.Layer, qat_model: keras.Model) -> bool:
    # Inside QuantizedSharedHead a batch norm is always followed by its quantized ReLU6.
    return any(
        isinstance(layer, QuantizedSharedHead) and wrapper in layer.submodules
        for layer in qat_model.layers
    )


def _keras_dir(model_dir: str) -> str:
    for candidate in (os.path.join(model_dir, KERAS_SUBDIR), model_dir):
        if tf.io.gfile.exists(os.path.join(candidate, QAT_MODEL_FILE)):
            return candidate
    raise FileNotFoundError(f"no {QAT_MODEL_FILE} in {model_dir} or its {KERAS_SUBDIR}/")


def load_qat_model(model_dir: str) -> tuple[keras.Model, TrainedModelConfig]:
    """Rebuild a saved QAT model (``qat_trainer.save_qat_model``; a QATTrainer Model artifact).

    Returns the fake-quant functional model with its weights and quantizer
    ranges, and the float architecture's :class:`TrainedModelConfig`.
    """
    keras_dir = _keras_dir(model_dir)
    with tf.io.gfile.GFile(os.path.join(keras_dir, QAT_MODEL_FILE)) as fh:
        saved = json.loads(fh.read())
    model = qat_model_from_config(saved["config"], qat_custom_objects())
    model.load_weights(os.path.join(keras_dir, QAT_WEIGHTS_FILE))
    return model, read_trained_config(keras_dir)
