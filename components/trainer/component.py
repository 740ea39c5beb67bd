"""The Trainer TFX component: Examples in; Model (serving SavedModel + Keras config/weights)
and ModelRun (TensorBoard logs, checkpoints) out. Parameters mirror the config's
``ModelConfig`` / ``TrainConfig`` fields (see ``Trainer.from_config``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.trainer import executor


class TrainerSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`Trainer`."""

    PARAMETERS = {
        "model_name": component_spec.ExecutionParameter(type=str),
        "uri": component_spec.ExecutionParameter(type=str, optional=True),
        "hparams": component_spec.ExecutionParameter(type=str, optional=True),  # JSON
        "image_size": component_spec.ExecutionParameter(type=int, optional=True),
        "epochs": component_spec.ExecutionParameter(type=int),
        "batch_size": component_spec.ExecutionParameter(type=int),
        "learning_rate": component_spec.ExecutionParameter(type=float),
        "warmup_epochs": component_spec.ExecutionParameter(type=float),
        "moving_average_decay": component_spec.ExecutionParameter(type=float),
        "var_freeze_expr": component_spec.ExecutionParameter(type=str, optional=True),
        "steps_per_execution": component_spec.ExecutionParameter(type=int),
        "seed": component_spec.ExecutionParameter(type=int),
        "tflite_max_detections": component_spec.ExecutionParameter(type=int),
        "train_split": component_spec.ExecutionParameter(type=str, optional=True),
        "eval_split": component_spec.ExecutionParameter(type=str, optional=True),
        "checkpoint_dir": component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        executor.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelRun),
    }


class Trainer(base_component.BaseComponent):
    """Trains EfficientDet-Lite (float) on the Examples' train split, evaluates on eval.

    ``checkpoint_dir`` (optional, a stable folder) lets a rerun after a crash
    resume from the last finished epoch; by default checkpoints live in the
    run's ModelRun artifact.
    """

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: channel.BaseChannel,
        *,
        model_name: str = "efficientdet_lite0",
        uri: str = "",
        hparams: Mapping[str, Any] | None = None,
        image_size: int = 0,
        epochs: int = 50,
        batch_size: int = 64,
        learning_rate: float = 0.08,
        warmup_epochs: float = 1.0,
        moving_average_decay: float = 0.0,
        var_freeze_expr: str = "(efficientnet|fpn_cells|resample_p6)",
        steps_per_execution: int = 1,
        seed: int = 111111,
        tflite_max_detections: int = 25,
        train_split: str = "train",
        eval_split: str = "eval",
        checkpoint_dir: str = "",
    ) -> None:
        spec = TrainerSpec(
            examples=examples,
            model_name=model_name,
            uri=uri,
            hparams=json.dumps(dict(hparams or {}), sort_keys=True),
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_epochs=warmup_epochs,
            moving_average_decay=moving_average_decay,
            var_freeze_expr=var_freeze_expr,
            steps_per_execution=steps_per_execution,
            seed=seed,
            tflite_max_detections=tflite_max_detections,
            train_split=train_split,
            eval_split=eval_split,
            checkpoint_dir=checkpoint_dir,
            model=channel.Channel(type=standard_artifacts.Model),
            model_run=channel.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)

    @classmethod
    def from_config(
        cls, examples: channel.BaseChannel, model: Any, train: Any, **kwargs: Any
    ) -> Trainer:
        """Build from ``pipeline.config`` ``ModelConfig`` and ``TrainConfig`` objects."""
        import dataclasses

        from model_maker.object_detector.trainer import TrainerOptions

        # One mapping from the config to the trainer's settings: the library's.
        params = dataclasses.asdict(TrainerOptions.from_config(model, train))
        params.update(kwargs)
        return cls(examples, **params)
