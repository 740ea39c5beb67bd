"""The Evaluator TFX component: TFLite variants in, ModelEvaluation and ModelBlessing out."""

from __future__ import annotations

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.artifacts import TFLiteModel
from components.evaluator import executor
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.settings import to_json

EXAMPLES_KEY = "examples"
TFLITE_KEY = "tflite"
MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"


class EvaluatorSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`Evaluator` (see EvaluateConfig)."""

    PARAMETERS = {
        executor.OPTIONS_KEY: component_spec.ExecutionParameter(type=str),  # JSON
    }
    INPUTS = {
        EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        TFLITE_KEY: component_spec.ChannelParameter(type=TFLiteModel),
        MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        EVALUATION_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class Evaluator(base_beam_component.BaseBeamComponent):
    """Evaluates every TFLite variant on the eval split and blesses the candidate.

    Detectors: COCO AP with Beam + pycocotools; classifiers (the manifest's
    ``task``): top-1/top-5, per-class accuracy, confusion matrix, macro-F1.

    ``options`` is a :class:`~model_maker.core.evaluation.EvaluateOptions` (the
    config's ``evaluate`` section), carried as JSON.

    Beam arguments come from the pipeline (``beam_pipeline_args``), e.g.
    ``--direct_num_workers=2 --direct_running_mode=multi_processing``.
    """

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: channel.BaseChannel,
        tflite: channel.BaseChannel,
        model: channel.BaseChannel | None = None,
        options: EvaluateOptions = EvaluateOptions(),
    ) -> None:
        spec = EvaluatorSpec(
            examples=examples,
            tflite=tflite,
            model=model,
            options=to_json(options),
            evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
