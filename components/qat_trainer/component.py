"""The QATTrainer TFX component: Examples + float Model in, QAT Model out.

Parameters are the fields of ``QATHParams`` (``QATConfig`` of the pipeline
config, see ``QATTrainer.from_config``). The output Model has the Trainer's
layout plus the QAT graph (see :mod:`model_maker.object_detector.qat_trainer`).
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.qat_trainer import executor


class QATTrainerSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`QATTrainer`."""

    PARAMETERS = {
        "learning_rate": component_spec.ExecutionParameter(type=float),
        "batch_size": component_spec.ExecutionParameter(type=int),
        "epochs": component_spec.ExecutionParameter(type=int),
        "decay_steps": component_spec.ExecutionParameter(type=int),
        "decay_rate": component_spec.ExecutionParameter(type=float),
        "train_split": component_spec.ExecutionParameter(type=str, optional=True),
        "eval_split": component_spec.ExecutionParameter(type=str, optional=True),
        "checkpoint_dir": component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        executor.QAT_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }


class QATTrainer(base_component.BaseComponent):
    """Quantization-aware fine-tuning of the Trainer's model on the train split.

    The fake-quant model is evaluated on ``eval_split`` (COCO AP, logged and
    saved in ``qat.json`` and as the output's ``fake_quant_AP``/``_AP50``
    properties) so a collapse shows before conversion. Defaults are
    ``QATHParams()``'s.

    ``checkpoint_dir`` (optional, a stable folder) makes a rerun after a crash
    resume from the last finished QAT epoch; the executor keeps one
    sub-folder per float model there, so a new float model never resumes from
    another's QAT. Without it, QAT restarts from the float model.
    """

    SPEC_CLASS = QATTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: channel.BaseChannel,
        model: channel.BaseChannel,
        *,
        learning_rate: float = 0.03,
        batch_size: int = 32,
        epochs: int = 10,
        decay_steps: int = 231,
        decay_rate: float = 0.96,
        train_split: str = "train",
        eval_split: str = "eval",
        checkpoint_dir: str = "",
    ) -> None:
        spec = QATTrainerSpec(
            examples=examples,
            model=model,
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=epochs,
            decay_steps=decay_steps,
            decay_rate=decay_rate,
            train_split=train_split,
            eval_split=eval_split,
            checkpoint_dir=checkpoint_dir,
            qat_model=channel.Channel(type=standard_artifacts.Model),
        )
        super().__init__(spec=spec)

    @classmethod
    def from_config(
        cls, examples: channel.BaseChannel, model: channel.BaseChannel, qat: Any, **kwargs: Any
    ) -> QATTrainer:
        """Build from a ``pipeline.config.QATConfig``."""
        return cls(
            examples,
            model,
            learning_rate=qat.learning_rate,
            batch_size=qat.batch_size,
            epochs=qat.epochs,
            decay_steps=qat.decay_steps,
            decay_rate=qat.decay_rate,
            **kwargs,
        )
