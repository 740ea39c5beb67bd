"""The TFLiteConverter TFX component: Model (+ QAT Model, Examples) in, TFLiteModel out."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.artifacts import TFLiteModel
from components.tflite_converter import executor

MODEL_KEY = "model"
QAT_MODEL_KEY = "qat_model"
EXAMPLES_KEY = "examples"
TFLITE_KEY = "tflite"


class TFLiteConverterSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`TFLiteConverter` (see ConvertConfig)."""

    PARAMETERS = {
        "variants": component_spec.ExecutionParameter(type=str),  # JSON list of names
        "int8_input_type": component_spec.ExecutionParameter(type=str),
        "representative_samples": component_spec.ExecutionParameter(type=int),
        "max_detections": component_spec.ExecutionParameter(type=int),
        "score_threshold": component_spec.ExecutionParameter(type=float),
        "iou_threshold": component_spec.ExecutionParameter(type=float),
        "with_nms": component_spec.ExecutionParameter(type=int),  # 1 or 0
    }
    INPUTS = {
        MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        QAT_MODEL_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.Model, optional=True
        ),
        EXAMPLES_KEY: component_spec.ChannelParameter(
            type=standard_artifacts.Examples, optional=True
        ),
    }
    OUTPUTS = {
        TFLITE_KEY: component_spec.ChannelParameter(type=TFLiteModel),
    }


class TFLiteConverter(base_component.BaseComponent):
    """Writes one ``.tflite`` per variant, ``labels.txt`` and ``manifest.json``.

    ``examples`` (the train split calibrates ptq_int8 and qat_int8) is needed
    by the int8 variants, ``qat_model`` by qat_int8.
    """

    SPEC_CLASS = TFLiteConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: channel.BaseChannel,
        qat_model: channel.BaseChannel | None = None,
        examples: channel.BaseChannel | None = None,
        *,
        variants: Sequence[str] = ("float32", "ptq_int8", "qat_int8"),
        int8_input_type: str = "uint8",
        representative_samples: int = 100,
        max_detections: int = 25,
        score_threshold: float = 1e-8,
        iou_threshold: float = 0.5,
        with_nms: bool = True,
    ) -> None:
        spec = TFLiteConverterSpec(
            model=model,
            qat_model=qat_model,
            examples=examples,
            variants=json.dumps(list(variants)),
            int8_input_type=int8_input_type,
            representative_samples=representative_samples,
            max_detections=max_detections,
            score_threshold=score_threshold,
            iou_threshold=iou_threshold,
            with_nms=int(bool(with_nms)),
            tflite=channel.Channel(type=TFLiteModel),
        )
        super().__init__(spec=spec)
