"""TFLiteConverter executor: one call into :func:`model_maker.tasks.convert_trained_model`
(the detector's or the classifier's converter, as the Model says)."""

from __future__ import annotations

import logging
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from model_maker.core.settings import from_json
from model_maker.object_detector.options import TFLiteSetOptions
from model_maker.tasks import convert_trained_model

LOG = logging.getLogger("qatflow")

OPTIONS_KEY = "options"


def _optional_uri(input_dict: dict[str, list[Any]], key: str) -> str | None:
    artifacts = input_dict.get(key) or []
    return artifact_utils.get_single_uri(artifacts) if artifacts else None


class Executor(base_executor.BaseExecutor):
    """Converts the trained float (and QAT) model into every configured TFLite variant."""

    def Do(  # noqa: N802 - TFX executor API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        tflite = artifact_utils.get_single_instance(output_dict["tflite"])
        manifest = convert_trained_model(
            artifact_utils.get_single_uri(input_dict["model"]),
            tflite.uri,
            from_json(TFLiteSetOptions, exec_properties.get(OPTIONS_KEY)),
            qat_model_dir=_optional_uri(input_dict, "qat_model"),
            examples_uri=_optional_uri(input_dict, "examples"),
        )
        variants = [entry["variant"] for entry in manifest["variants"]]
        tflite.set_string_custom_property("variants", ",".join(variants))
        LOG.info("TFLiteConverter wrote %s to %s", ", ".join(variants), tflite.uri)
