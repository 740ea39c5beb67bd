"""QATTrainer executor: the ``options`` JSON -> ``QATHParams`` -> one ``qat_from_examples`` call.

The float Model says its task (:func:`model_maker.tasks.model_task`). See
:mod:`model_maker.object_detector.qat_trainer` and
:mod:`model_maker.image_classifier.qat_trainer` for the Model artifact layout
(``keras/config.json`` as the Trainer's, the QAT weights rebuilt by
``load_qat_model``, ``serving/``, ``qat.json`` with the fake-quant model's
COCO AP or top-1 on the eval split). The ``model_run`` output (a ModelRun, as
the Trainer's) receives the QAT's TensorBoard epoch scalars.
"""

from __future__ import annotations

import logging
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import from_json
from model_maker.tasks import AccuracyCheck, QATDecision, qat_or_skip

LOG = logging.getLogger("qatflow")

OPTIONS_KEY = "options"
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
QAT_MODEL_KEY = "qat_model"
MODEL_RUN_KEY = "model_run"
CHECK_KEY = "accuracy_check"


def _model_run_uri(output_dict: dict[str, list]) -> str | None:
    # Pipelines compiled before the QATTrainer had a ModelRun output pass none.
    runs = output_dict.get(MODEL_RUN_KEY)
    return artifact_utils.get_single_uri(runs) if runs else None


def record(qat_model: Any, decision: QATDecision | None, metrics: dict[str, Any]) -> None:
    """The QAT Model's ML Metadata properties: what ``qat.mode: auto`` decided, and the
    fake-quant model's eval metrics (``fake_quant_AP``, ...)."""
    if decision is not None and decision.mode == "auto":
        qat_model.set_string_custom_property(
            "qat_decision", "trained" if decision.qat else "skipped"
        )
        qat_model.set_string_custom_property("qat_decision_reason", decision.reason)
        for key, value in (
            (f"ptq_check_{decision.metric}", decision.ptq_metric),
            (f"ptq_check_baseline_{decision.metric}", decision.baseline_metric),
            ("ptq_check_seconds", decision.check_seconds),
        ):
            if value is not None:
                qat_model.set_float_custom_property(key, value)
    for key in ("AP", "AP50", "top1", "top5"):
        if key in metrics:
            qat_model.set_float_custom_property(f"fake_quant_{key}", metrics[key])


class Executor(base_executor.BaseExecutor):
    """Fine-tunes the float Model with fake quant and writes the QAT Model artifact."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        qat_model = artifact_utils.get_single_instance(output_dict[QAT_MODEL_KEY])
        check = exec_properties.get(CHECK_KEY)
        decision, result = qat_or_skip(
            artifact_utils.get_single_uri(input_dict[EXAMPLES_KEY]),
            artifact_utils.get_single_uri(input_dict[MODEL_KEY]),
            qat_model.uri,
            from_json(QATHParams, exec_properties.get(OPTIONS_KEY)),
            from_json(AccuracyCheck, check) if check else None,
            train_split=exec_properties.get("train_split") or "train",
            eval_split=exec_properties.get("eval_split") or "",
            checkpoint_root=exec_properties.get("checkpoint_dir") or None,
            run_dir=_model_run_uri(output_dict),
        )
        record(qat_model, decision, result.metrics if result is not None else {})
        if result is None:
            LOG.info("QATTrainer: %s", decision.reason)
            return
        LOG.info("QATTrainer: %d steps in %.1f s", result.steps, result.seconds)
