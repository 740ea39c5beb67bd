"""The Trainer TFX component: Examples in; Model (serving SavedModel + Keras config/weights)
and ModelRun (TensorBoard logs, checkpoints) out.

Its settings travel as one JSON execution property, ``options``: a
:class:`~model_maker.object_detector.options.TrainerOptions` (detectors: the
config's ``model``, ``train`` and ``postprocess`` sections) or a
:class:`~model_maker.image_classifier.options.ClassifierTrainerOptions`
(classifiers: ``model`` and ``train``), as TFX's own Trainer carries
``train_args``; ``model.task`` says which.
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.trainer import executor, vertex
from model_maker.core.settings import to_json
from model_maker.image_classifier.options import ClassifierTrainerOptions
from model_maker.object_detector.options import TrainerOptions


class TrainerSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`Trainer`."""

    PARAMETERS = {
        executor.OPTIONS_KEY: component_spec.ExecutionParameter(type=str),  # JSON
        "checkpoint_dir": component_spec.ExecutionParameter(type=str, optional=True),
        # JSON; only with with_vertex_training()
        vertex.CUSTOM_CONFIG_KEY: component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        executor.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelRun),
    }


class Trainer(base_component.BaseComponent):
    """Trains the float model (EfficientDet-Lite or a classifier) on the Examples' train
    split and evaluates it on the eval split.

    ``checkpoint_dir`` (optional, a stable folder) lets a rerun after a crash
    resume from the last finished epoch; by default checkpoints live in the
    run's ModelRun artifact.
    """

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: channel.BaseChannel,
        options: TrainerOptions | ClassifierTrainerOptions = TrainerOptions(),
        *,
        checkpoint_dir: str = "",
    ) -> None:
        spec = TrainerSpec(
            examples=examples,
            options=to_json(options),
            checkpoint_dir=checkpoint_dir,
            model=channel.Channel(type=standard_artifacts.Model),
            model_run=channel.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)

    def with_vertex_training(self, config: dict[str, Any]) -> Trainer:
        """Train on the replicas of a Vertex AI CustomJob instead of in this component.

        ``config`` is the job (:func:`components.trainer.vertex.custom_config`); the
        component's own container then only submits it and waits
        (:class:`components.trainer.vertex.Executor`).
        """
        return vertex.use_vertex_training(self, config, vertex.Executor)
