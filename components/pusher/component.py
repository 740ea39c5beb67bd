"""The Pusher TFX component: blessed TFLite variant in, PushedModel out."""

from __future__ import annotations

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.artifacts import TFLiteModel
from components.pusher import executor


class PusherSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`Pusher`."""

    PARAMETERS = {
        "destination": component_spec.ExecutionParameter(type=str),
    }
    INPUTS = {
        "tflite": component_spec.ChannelParameter(type=TFLiteModel),
        "evaluation": component_spec.ChannelParameter(type=standard_artifacts.ModelEvaluation),
        "blessing": component_spec.ChannelParameter(type=standard_artifacts.ModelBlessing),
    }
    OUTPUTS = {
        "pushed_model": component_spec.ChannelParameter(type=standard_artifacts.PushedModel),
    }


class Pusher(base_component.BaseComponent):
    """Pushes the blessed candidate, labels.txt, manifest.json and metrics.json, versioned."""

    SPEC_CLASS = PusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        tflite: channel.BaseChannel,
        evaluation: channel.BaseChannel,
        blessing: channel.BaseChannel,
        *,
        destination: str,
    ) -> None:
        spec = PusherSpec(
            tflite=tflite,
            evaluation=evaluation,
            blessing=blessing,
            destination=destination,
            pushed_model=channel.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
