"""QATTrainer executor: exec properties -> ``QATHParams`` -> one ``qat_from_examples`` call.

See :mod:`model_maker.object_detector.qat_trainer` for the Model artifact
layout (``keras/config.json`` as the Trainer's, ``keras/qat_model.json`` +
``keras/qat_weights.h5`` rebuilt by ``load_qat_model``, ``serving/``,
``qat.json`` with the fake-quant model's COCO AP on the eval split).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

LOG = logging.getLogger("qatflow")

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
QAT_MODEL_KEY = "qat_model"

#: Execution parameters that are QATHParams fields.
HPARAM_KEYS = ("learning_rate", "batch_size", "epochs", "decay_steps", "decay_rate")


def hparams_from_properties(exec_properties: Mapping[str, Any]):
    """The ``QATHParams`` the component's parameters describe (defaults where unset)."""
    from model_maker.core.qat import QATHParams

    return QATHParams.from_dict(
        {k: exec_properties[k] for k in HPARAM_KEYS if exec_properties.get(k) is not None}
    )


def qat_checkpoint_dir(base: str, float_model_uri: str, hparams: Any) -> str:
    """``base``'s sub-folder for QAT of this float model with these hparams ("" if no base)."""
    if not base:
        return ""
    key = hashlib.sha256(f"{float_model_uri}|{hparams.as_dict()}".encode()).hexdigest()[:12]
    return os.path.join(base, key)


class Executor(base_executor.BaseExecutor):
    """Fine-tunes the float Model with fake quant and writes the QAT Model artifact."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        from model_maker.object_detector.qat_trainer import qat_from_examples

        float_model_uri = artifact_utils.get_single_uri(input_dict[MODEL_KEY])
        hparams = hparams_from_properties(exec_properties)
        result = qat_from_examples(
            artifact_utils.get_single_uri(input_dict[EXAMPLES_KEY]),
            float_model_uri,
            artifact_utils.get_single_uri(output_dict[QAT_MODEL_KEY]),
            hparams,
            train_split=exec_properties.get("train_split") or "train",
            eval_split=exec_properties.get("eval_split") or "",
            checkpoint_dir=qat_checkpoint_dir(
                exec_properties.get("checkpoint_dir") or "", float_model_uri, hparams
            )
            or None,
        )
        qat_model = artifact_utils.get_single_instance(output_dict[QAT_MODEL_KEY])
        for key in ("AP", "AP50"):
            if key in result.metrics:
                qat_model.set_float_custom_property(f"fake_quant_{key}", result.metrics[key])
        LOG.info("QATTrainer: %d steps in %.1f s", result.steps, result.seconds)
