"""Quantization-aware image classifiers: the float model with TFMOT fake quant, and its coverage.

:func:`quantize_classifier` passes the whole functional float model through
:func:`model_maker.core.qat.quantize_functional_model` (the detector's
scheme: TFMOT's 8-bit default with conv + BN + ReLU fused, kernels per
channel, depthwise kernels per channel too). Every builder in ``models/``
uses only layers that scheme knows, so no extra configs are needed.

The fixed input normalisation (``Rescaling``) becomes, as in the detector,
two ``Rescaling`` layers, ``input_normalization_scale`` (``x / std``) and
``input_normalization`` (``+ (-mean / std)``), each with its output
fake-quantized, so the int8 graph starts with the int8 MUL + ADD of
post-training quantization (:func:`model_maker.core.qat.rewrite_for_int8`).
Their scale and offset are constants, not variables: nothing there can train
(training the normalisation, when it was a 1x1 depthwise conv, wrecked the
detector). The input's fake-quant range is pinned to pixels and kept through
training (:func:`frozen_variables`, :class:`KeepFrozen`).

:func:`quantization_coverage` lists every Conv2D / DepthwiseConv2D / Dense of
the float model (and the normalisation) with its fake-quant points, or the
reason it stayed float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from model_maker.core.errors import UsageError
from model_maker.core.qat import (
    RESCALING_SCALE_SUFFIX,
    QATHParams,
    calibrate_fake_quant,
    qat_model_from_config,
    quantize_custom_objects,
    quantize_functional_model,
)
from model_maker.image_classifier.models.head import NORMALIZATION_NAME
from model_maker.image_classifier.train_lib import MOMENTUM, compile_and_fit, steps_in

tfq = tfmot.quantization.keras

#: Layer types whose weights int8 inference multiplies (what "coverage" is about).
WEIGHTED_TYPES: tuple[type, ...] = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,  # not a Conv2D subclass in tf_keras
    keras.layers.Dense,
)


def quantize_classifier(float_model: keras.Model) -> keras.Model:
    """Fake-quant copy of a classifier from ``models/`` (weights copied; ``float_model`` untouched).

    Returns:
      A functional model with the same input and logits output.

    Raises:
      model_maker.core.qat.QATError: a layer without QuantizeConfig, or a shared layer.
    """
    return quantize_functional_model(float_model)


#: The range of the model input's fake quant: raw pixels. Pinned, so the int8
#: file's uint8 input has scale 1 and zero point 0 and takes pixels as they are
#: (MediaPipe feeds a uint8 input the image bytes without looking at its scale).
PIXEL_RANGE = (0.0, 255.0)


def input_range_variables(qat_model: keras.Model) -> list[tf.Variable]:
    """The min/max variables of the fake quant on the model input (TFMOT's ``QuantizeLayer``)."""
    found = []
    for layer in qat_model.layers:
        if type(layer).__name__ == "QuantizeLayer":  # TFMOT does not export the class
            found += [
                v
                for v in layer.weights
                if v.name.rsplit("/", 1)[-1].startswith((f"{layer.name}_min", f"{layer.name}_max"))
            ]
    return found


def pin_input_range(qat_model: keras.Model) -> int:
    """Set the input fake quant's range to :data:`PIXEL_RANGE`; return variables set."""
    variables = input_range_variables(qat_model)
    for variable in variables:
        low = "_min" in variable.name.rsplit("/", 1)[-1]
        variable.assign(PIXEL_RANGE[0] if low else PIXEL_RANGE[1])
    return len(variables)


def frozen_variables(qat_model: keras.Model) -> list[tf.Variable]:
    """The variables of ``qat_model`` that QAT must keep.

    They are: the kernels TFMOT lists as trainable in layers that are not (a
    float model trained with ``do_fine_tuning: false`` froze its backbone, and
    QAT trains what the float training trained); and the input range
    (:func:`input_range_variables`, which TFMOT's moving average would
    otherwise move off 0..255).
    """
    frozen: list[tf.Variable] = []
    seen: set[int] = set()
    for layer in qat_model.layers:
        if layer.trainable:
            continue
        for variable in layer.trainable_weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                frozen.append(variable)
    return frozen + input_range_variables(qat_model)


class KeepFrozen(keras.callbacks.Callback):
    """Puts ``variables`` back to their values at the start of training after every step.

    For ``Model.fit``, which trains every trainable variable: the optimizer's
    update is undone before the next step runs, so the forward passes see the
    original values exactly.

    Args:
      variables: the variables to keep.
    """

    def __init__(self, variables: Sequence[tf.Variable]) -> None:
        super().__init__()
        self.variables = list(variables)
        self._values: list[tf.Tensor] = []

    def on_train_begin(self, logs: Any = None) -> None:
        self._values = [tf.identity(v) for v in self.variables]

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        for variable, value in zip(self.variables, self._values, strict=True):
            variable.assign(value)


def fake_quant_points(layer: keras.layers.Layer) -> tuple[str, ...]:
    """What a TFMOT wrapper fake-quantizes (``kernel``, ``depthwise_kernel``,
    ``post_activation``, ``output``...), read from its ``<point>_min`` range variables."""
    points = set()
    for weight in layer.weights:
        leaf = weight.name.split("/")[-1].split(":")[0]
        if leaf.endswith("_min"):
            points.add(leaf[: -len("_min")])
    return tuple(sorted(points))


@dataclass(frozen=True)
class LayerCoverage:
    """How one weighted layer of the float model appears in the QAT model.

    Attributes:
      name: float layer name.
      kind: float layer type (``Conv2D``, ``DepthwiseConv2D``, ``Dense``, or
        ``Rescaling`` for the normalisation, which the QAT graph holds as two
        ``Rescaling`` layers, ``x * scale`` and ``+ offset``).
      quantized: its kernel is fake-quantized (the normalisation: the outputs
        of both its halves are).
      points: fake-quant points of its QAT wrapper.
      reason: why it stays float ("" when quantized).
    """

    name: str
    kind: str
    quantized: bool
    points: tuple[str, ...]
    reason: str = ""


def _wrappers(qat_model: keras.Model) -> dict[str, keras.layers.Layer]:
    out = {}
    for module in qat_model.submodules:
        inner = getattr(module, "layer", None)
        if isinstance(module, tfq.QuantizeWrapper) and inner is not None:
            out[inner.name] = module
    return out


def quantization_coverage(float_model: keras.Model, qat_model: keras.Model) -> list[LayerCoverage]:
    """Every Conv2D / DepthwiseConv2D / Dense of ``float_model`` (and its normalisation)
    with the fake quant it has in ``qat_model``, in the float model's layer order."""
    wrappers = _wrappers(qat_model)
    rows = []
    for layer in float_model.layers:
        is_normalization = layer.name == NORMALIZATION_NAME
        if not (isinstance(layer, WEIGHTED_TYPES) or is_normalization):
            continue
        kind = type(layer).__name__
        wrapper = wrappers.get(layer.name)
        if wrapper is None:
            reason = "no QuantizeWrapper in the QAT model"
            rows.append(LayerCoverage(layer.name, kind, False, (), reason))
            continue
        points = fake_quant_points(wrapper)
        if is_normalization:
            half = wrappers.get(f"{layer.name}{RESCALING_SCALE_SUFFIX}")
            halves = [points, fake_quant_points(half) if half is not None else ()]
            if all("output" in p for p in halves):
                rows.append(LayerCoverage(layer.name, kind, True, points))
            else:
                reason = "its x * scale and + offset halves are not both output-quantized"
                rows.append(LayerCoverage(layer.name, kind, False, points, reason))
        elif {"kernel", "depthwise_kernel"} & set(points):
            rows.append(LayerCoverage(layer.name, kind, True, points))
        else:
            rows.append(
                LayerCoverage(
                    layer.name, kind, False, points, "wrapped, but its kernel has no fake quant"
                )
            )
    return rows


def float_layers(coverage: Sequence[LayerCoverage]) -> dict[str, str]:
    """``name -> reason`` of the weighted layers that stay float."""
    return {row.name: row.reason for row in coverage if not row.quantized}


def calibrate(qat_model: keras.Model, train_data: tf.data.Dataset, batches: int) -> int:
    """Set the fake-quant ranges from ``batches`` batches of ``train_data``
    (:func:`~model_maker.core.qat.calibrate_fake_quant`), then pin the input range
    to pixels (:func:`pin_input_range`); return the batches used."""
    used = calibrate_fake_quant(qat_model, (images for images, _ in train_data.take(batches)))
    pin_input_range(qat_model)
    return used


def rebuild_qat_classifier(qat_model: keras.Model) -> keras.Model:
    """A new fake-quant classifier of ``qat_model``'s architecture (new variables, in
    the scope of the strategy in force; the trainable flags kept)."""
    return qat_model_from_config(qat_model.get_config(), quantize_custom_objects())


def train_qat(
    qat_model: keras.Model,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    hparams: QATHParams,
    *,
    label_smoothing: float = 0.0,
    calibration_batches: int = 8,
    steps_per_epoch: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    checkpoint_dir: str | None = None,
) -> keras.callbacks.History:
    """Fine-tune ``qat_model`` with the detector's :class:`~model_maker.core.qat.QATHParams`.

    First the fake-quant ranges are set from ``calibration_batches`` training
    batches (:func:`~model_maker.core.qat.calibrate_fake_quant`: TFMOT's
    moving-average ranges would need ~1,000 steps otherwise; the input range is
    then pinned to 0..255, :func:`pin_input_range`), then SGD with
    momentum 0.9 and ``ExponentialDecay(learning_rate, decay_steps, decay_rate)``
    runs the float trainer's loop (:func:`~model_maker.image_classifier.train_lib.compile_and_fit`)
    for ``hparams.epochs``, with the fixed normalisation and the input range
    kept (:class:`KeepFrozen`).
    ``train_data`` should be batched with ``hparams.batch_size`` images.
    ``checkpoint_dir`` makes it resumable: a call that finds a checkpoint there
    skips the calibration (the checkpoint holds the ranges training moved on
    to) and goes on after the last finished epoch.
    """
    if not (steps_per_epoch or steps_in(train_data)):
        raise UsageError(
            "train_qat: the training dataset has no known length; give steps_per_epoch"
        )
    resuming = bool(checkpoint_dir) and bool(tf.train.latest_checkpoint(checkpoint_dir))
    if calibration_batches > 0 and not resuming:
        calibrate(qat_model, train_data, calibration_batches)
    return compile_and_fit(
        qat_model,
        train_data,
        validation_data,
        optimizer=keras.optimizers.SGD(hparams.learning_rate_schedule(), momentum=MOMENTUM),
        epochs=hparams.epochs,
        label_smoothing=label_smoothing,
        steps_per_epoch=steps_per_epoch,
        callbacks=[KeepFrozen(frozen_variables(qat_model)), *callbacks],
        checkpoint_dir=checkpoint_dir,
    )


def coverage_table(coverage: Sequence[LayerCoverage]) -> str:
    """A plain-text table of :func:`quantization_coverage` (one line per layer)."""
    width = max((len(row.name) for row in coverage), default=4)
    lines = []
    for row in coverage:
        status = ", ".join(row.points) if row.quantized else f"FLOAT: {row.reason}"
        lines.append(f"{row.name:<{width}}  {row.kind:<16}  {status}")
    return "\n".join(lines)
