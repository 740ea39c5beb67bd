"""Trainer executor: exec properties -> ``TrainerOptions`` -> one ``train_from_examples`` call.

See :mod:`model_maker.object_detector.trainer` for the Model artifact layout
(``serving/``, ``keras/config.json``, ``keras/weights.h5``, ``metrics.json``)
and what goes into the ModelRun artifact (TensorBoard logs, checkpoints).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

LOG = logging.getLogger("qatflow")

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
MODEL_RUN_KEY = "model_run"


def _hparams(value: Any) -> Any:
    # Parameters reach the executor as text when run by an orchestrator.
    if value in (None, ""):
        return {}
    if isinstance(value, str) and value.lstrip().startswith("{"):
        return json.loads(value)
    return value


def options_from_properties(exec_properties: Mapping[str, Any]):
    """The ``TrainerOptions`` that the component's parameters describe."""
    from model_maker.object_detector.trainer import TrainerOptions

    defaults = TrainerOptions()

    def get(key: str, cast):
        value = exec_properties.get(key)
        return getattr(defaults, key) if value is None else cast(value)

    return TrainerOptions(
        model_name=get("model_name", str),
        uri=get("uri", str),
        hparams=_hparams(exec_properties.get("hparams")),
        image_size=get("image_size", int),
        epochs=get("epochs", int),
        batch_size=get("batch_size", int),
        learning_rate=get("learning_rate", float),
        warmup_epochs=get("warmup_epochs", float),
        moving_average_decay=get("moving_average_decay", float),
        var_freeze_expr=get("var_freeze_expr", str),
        steps_per_execution=get("steps_per_execution", int),
        seed=get("seed", int),
        tflite_max_detections=get("tflite_max_detections", int),
        train_split=get("train_split", str),
        eval_split=get("eval_split", str),
    )


class Executor(base_executor.BaseExecutor):
    """Trains the float detector and writes the Model and ModelRun artifacts."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        from model_maker.object_detector.trainer import train_from_examples

        examples_uri = artifact_utils.get_single_uri(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        model_run = artifact_utils.get_single_instance(output_dict[MODEL_RUN_KEY])
        metrics = train_from_examples(
            examples_uri,
            model.uri,
            model_run.uri,
            options_from_properties(exec_properties),
            checkpoint_dir=exec_properties.get("checkpoint_dir") or None,
        )
        for key in ("AP", "AP50"):
            if key in metrics:
                model.set_float_custom_property(key, float(metrics[key]))
        LOG.info("Trainer wrote %s (run files in %s)", model.uri, model_run.uri)
