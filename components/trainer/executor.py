"""Trainer executor: the ``options`` JSON -> the task's options -> one ``train_from_examples`` call.

:mod:`model_maker.tasks` picks the task from ``model.task``. See
:mod:`model_maker.object_detector.trainer` and
:mod:`model_maker.image_classifier.trainer` for the Model artifact layouts
(``serving/``, ``keras/config.json``, ``keras/weights.h5``, ``metrics.json``)
and what goes into the ModelRun artifact (TensorBoard logs, checkpoints).
"""

from __future__ import annotations

import logging
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from model_maker.tasks import train_from_examples, trainer_options

LOG = logging.getLogger("qatflow")

OPTIONS_KEY = "options"
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"


def record_metrics(model: Any, metrics: dict[str, Any]) -> None:
    """The Model's ML Metadata properties: its eval metrics (COCO AP/AP50 or top-1/5)."""
    for key in ("AP", "AP50", "top1", "top5"):
        if key in metrics:
            model.set_float_custom_property(key, float(metrics[key]))


class Executor(base_executor.BaseExecutor):
    """Trains the float model (detector or classifier); writes the Model and ModelRun artifacts."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        model_run = artifact_utils.get_single_instance(output_dict[MODEL_RUN_KEY])
        metrics = train_from_examples(
            artifact_utils.get_single_uri(input_dict[EXAMPLES_KEY]),
            model.uri,
            model_run.uri,
            trainer_options(exec_properties.get(OPTIONS_KEY) or "{}"),
            checkpoint_dir=exec_properties.get("checkpoint_dir") or None,
        )
        record_metrics(model, metrics)
        LOG.info("Trainer wrote %s (run files in %s)", model.uri, model_run.uri)
