"""The TFLiteConverter TFX component: Model (+ QAT Model, Examples) in, TFLiteModel out."""

from __future__ import annotations

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.artifacts import TFLiteModel
from components.tflite_converter import executor
from model_maker.core.settings import to_json
from model_maker.object_detector.options import TFLiteSetOptions

MODEL_KEY = "model"
QAT_MODEL_KEY = "qat_model"
EXAMPLES_KEY = "examples"
TFLITE_KEY = "tflite"


class TFLiteConverterSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`TFLiteConverter`."""

    PARAMETERS = {
        executor.OPTIONS_KEY: component_spec.ExecutionParameter(type=str),  # JSON
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

    ``options`` is a :class:`~model_maker.object_detector.tflite_set.TFLiteSetOptions`
    (the config's ``convert`` and ``postprocess`` sections), carried as JSON.
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
        options: TFLiteSetOptions = TFLiteSetOptions(),
    ) -> None:
        spec = TFLiteConverterSpec(
            model=model,
            qat_model=qat_model,
            examples=examples,
            options=to_json(options),
            tflite=channel.Channel(type=TFLiteModel),
        )
        super().__init__(spec=spec)
