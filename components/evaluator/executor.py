"""Evaluator executor: one call into :func:`model_maker.tasks.evaluate_artifacts`
(the detector's or the classifier's evaluation, as the TFLite manifest says)."""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf
from tfx.types import artifact_utils

from components.local_beam import LocalBeamExecutor
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.settings import from_json
from model_maker.tasks import evaluate_artifacts

LOG = logging.getLogger("qatflow")

OPTIONS_KEY = "options"
BLESSED_KEY = "blessed"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


class Executor(LocalBeamExecutor):
    """Evaluates the TFLite variants (and the Keras model when given) on the eval split."""

    def Do(  # noqa: N802 - TFX executor API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        models = input_dict.get("model") or []
        result = evaluate_artifacts(
            artifact_utils.get_single_uri(input_dict["examples"]),
            artifact_utils.get_single_uri(input_dict["tflite"]),
            evaluation.uri,
            from_json(EvaluateOptions, exec_properties.get(OPTIONS_KEY)),
            model_dir=artifact_utils.get_single_uri(models) if models else None,
            beam_args=list(self._beam_pipeline_args),
        )
        decision = result.decision
        blessing.set_int_custom_property(BLESSED_KEY, 1 if decision.blessed else 0)
        blessing.set_string_custom_property("candidate", decision.candidate)
        blessing.set_string_custom_property("reason", "; ".join(decision.reasons))
        tf.io.gfile.makedirs(blessing.uri)
        marker = BLESSED_FILE if decision.blessed else NOT_BLESSED_FILE
        with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as fh:
            fh.write("\n".join(decision.reasons) + "\n")
        LOG.info(
            "%s %s: %s",
            decision.candidate,
            "blessed" if decision.blessed else "not blessed",
            "; ".join(decision.reasons),
        )
