"""The QATTrainer on several workers: the replicas of a Vertex AI CustomJob run its executor.

The launching path is the Trainer's (:mod:`components.trainer.vertex`): every replica
runs :class:`components.qat_trainer.executor.Executor` with ``qat.strategy:
multi_worker``; after the job, the QAT Model's ML Metadata properties come from the
chief's ``qat_decision.json`` and ``qat.json``.
"""

from __future__ import annotations

from typing import Any

from tfx.types import artifact_utils

from components.qat_trainer import executor
from components.trainer.vertex import VertexTrainingExecutor, read_json
from model_maker.core.options import MULTI_WORKER
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import from_json, replace, to_json
from model_maker.object_detector.qat_trainer import QAT_REPORT_FILE  # classifiers: the same
from model_maker.tasks import read_qat_decision


class Executor(VertexTrainingExecutor):
    """The QATTrainer on Vertex AI worker pools."""

    REPLICA_EXECUTOR = f"{executor.Executor.__module__}.{executor.Executor.__qualname__}"

    def multi_worker_options(self, options: str) -> str:
        hparams = from_json(QATHParams, options)
        return to_json(replace(hparams, strategy=MULTI_WORKER))

    def record(self, output_dict: dict[str, list[Any]]) -> None:
        qat_model = artifact_utils.get_single_instance(output_dict[executor.QAT_MODEL_KEY])
        report = read_json(qat_model.uri, QAT_REPORT_FILE)
        executor.record(qat_model, read_qat_decision(qat_model.uri), report.get("metrics") or {})
