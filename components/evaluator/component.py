"""The Evaluator TFX component: TFLite variants in, ModelEvaluation and ModelBlessing out."""

from __future__ import annotations

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.artifacts import TFLiteModel
from components.evaluator import executor

EXAMPLES_KEY = "examples"
TFLITE_KEY = "tflite"
MODEL_KEY = "model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"


class EvaluatorSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`Evaluator` (see EvaluateConfig)."""

    PARAMETERS = {
        "candidate": component_spec.ExecutionParameter(type=str),
        "metric": component_spec.ExecutionParameter(type=str),
        "max_ap_drop": component_spec.ExecutionParameter(type=float),
        "latency_runs": component_spec.ExecutionParameter(type=int),
        "split": component_spec.ExecutionParameter(type=str),
        "baseline": component_spec.ExecutionParameter(type=str, optional=True),
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
        *,
        candidate: str = "qat_int8",
        metric: str = "AP",
        max_ap_drop: float = 1.0,
        latency_runs: int = 20,
        split: str = "eval",
        baseline: str = "",
    ) -> None:
        spec = EvaluatorSpec(
            examples=examples,
            tflite=tflite,
            model=model,
            candidate=candidate,
            metric=metric,
            max_ap_drop=max_ap_drop,
            latency_runs=latency_runs,
            split=split,
            baseline=baseline,
            evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
