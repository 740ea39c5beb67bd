"""The QATTrainer TFX component: Examples + float Model in, QAT Model out.

Its settings travel as one JSON execution property, ``options``: a
:class:`~model_maker.core.qat_hparams.QATHParams` (the config's ``qat``
section less ``enabled``). The output Model has the Trainer's layout plus the
QAT graph (see :mod:`model_maker.object_detector.qat_trainer` and
:mod:`model_maker.image_classifier.qat_trainer`; the float Model says which).
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, component_spec, standard_artifacts

from components.qat_trainer import executor, vertex
from components.trainer.vertex import CUSTOM_CONFIG_KEY, use_vertex_training
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import to_json
from model_maker.tasks import AccuracyCheck


class QATTrainerSpec(component_spec.ComponentSpec):
    """Inputs, outputs and parameters of :class:`QATTrainer`."""

    PARAMETERS = {
        executor.OPTIONS_KEY: component_spec.ExecutionParameter(type=str),  # JSON
        "train_split": component_spec.ExecutionParameter(type=str, optional=True),
        "eval_split": component_spec.ExecutionParameter(type=str, optional=True),
        "checkpoint_dir": component_spec.ExecutionParameter(type=str, optional=True),
        executor.CHECK_KEY: component_spec.ExecutionParameter(type=str, optional=True),  # JSON
        # JSON; only with with_vertex_training()
        CUSTOM_CONFIG_KEY: component_spec.ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: component_spec.ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
    }
    OUTPUTS = {
        executor.QAT_MODEL_KEY: component_spec.ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_RUN_KEY: component_spec.ChannelParameter(type=standard_artifacts.ModelRun),
    }


class QATTrainer(base_component.BaseComponent):
    """Quantization-aware fine-tuning of the Trainer's model on the train split.

    The fake-quant model is evaluated on ``eval_split`` (COCO AP, logged and
    saved in ``qat.json`` and as the output's ``fake_quant_AP``/``_AP50``
    properties) so a collapse shows before conversion. ``model_run`` holds the
    TensorBoard epoch scalars, as the Trainer's does.

    ``checkpoint_dir`` (optional, a stable folder) makes a rerun after a crash
    resume from the last finished QAT epoch; one sub-folder per float model and
    hparams is kept there, so a new float model never resumes from another's
    QAT. Without it, QAT restarts from the float model.

    ``accuracy_check`` (``qat.mode: auto``, an
    :class:`~model_maker.tasks.AccuracyCheck`) scores ``ptq_int8`` first and skips
    QAT when it meets the blessing rule; the output then holds only
    ``qat_decision.json`` (and the check's files under ``ptq_check/``), and the
    properties ``qat_decision`` (skipped/trained), ``ptq_check_<metric>``,
    ``ptq_check_baseline_<metric>`` and ``ptq_check_seconds`` record why.
    """

    SPEC_CLASS = QATTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: channel.BaseChannel,
        model: channel.BaseChannel,
        options: QATHParams = QATHParams(),
        *,
        train_split: str = "train",
        eval_split: str = "eval",
        checkpoint_dir: str = "",
        accuracy_check: AccuracyCheck | None = None,
    ) -> None:
        spec = QATTrainerSpec(
            examples=examples,
            model=model,
            options=to_json(options),
            train_split=train_split,
            eval_split=eval_split,
            checkpoint_dir=checkpoint_dir,
            accuracy_check=to_json(accuracy_check) if accuracy_check is not None else "",
            qat_model=channel.Channel(type=standard_artifacts.Model),
            model_run=channel.Channel(type=standard_artifacts.ModelRun),
        )
        super().__init__(spec=spec)

    def with_vertex_training(self, config: dict[str, Any]) -> QATTrainer:
        """Fine-tune on the replicas of a Vertex AI CustomJob instead of in this component.

        ``config`` is the job (:func:`components.trainer.vertex.custom_config`); the
        component's own container then only submits it and waits
        (:class:`components.qat_trainer.vertex.Executor`).
        """
        return use_vertex_training(self, config, vertex.Executor)
