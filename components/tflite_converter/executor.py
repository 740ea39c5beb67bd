"""TFLiteConverter executor: one call into
:func:`model_maker.object_detector.tflite_set.convert_trained_model`."""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

LOG = logging.getLogger("qatflow")


def options_from_properties(exec_properties: dict[str, Any]):
    """:class:`TFLiteSetOptions` from the component's execution parameters."""
    from model_maker.object_detector.tflite_set import TFLiteSetOptions

    variants = exec_properties.get("variants") or '["float32"]'
    return TFLiteSetOptions(
        variants=tuple(json.loads(variants) if isinstance(variants, str) else variants),
        int8_input_type=exec_properties.get("int8_input_type") or "uint8",
        representative_samples=int(exec_properties.get("representative_samples", 100)),
        max_detections=int(exec_properties.get("max_detections", 25)),
        score_threshold=float(exec_properties.get("score_threshold", 1e-8)),
        iou_threshold=float(exec_properties.get("iou_threshold", 0.5)),
        with_nms=bool(int(exec_properties.get("with_nms", 1))),
    )


class Executor(base_executor.BaseExecutor):
    """Converts the trained float (and QAT) model into every configured TFLite variant."""

    def Do(  # noqa: N802 - TFX executor API
        self,
        input_dict: dict[str, list[Any]],
        output_dict: dict[str, list[Any]],
        exec_properties: dict[str, Any],
    ) -> None:
        from model_maker.object_detector.tflite_set import convert_trained_model

        def optional_uri(key: str) -> str | None:
            artifacts = input_dict.get(key) or []
            return artifact_utils.get_single_uri(artifacts) if artifacts else None

        tflite = artifact_utils.get_single_instance(output_dict["tflite"])
        manifest = convert_trained_model(
            artifact_utils.get_single_uri(input_dict["model"]),
            tflite.uri,
            options_from_properties(exec_properties),
            qat_model_dir=optional_uri("qat_model"),
            examples_uri=optional_uri("examples"),
        )
        variants = [entry["variant"] for entry in manifest["variants"]]
        tflite.set_string_custom_property("variants", ",".join(variants))
        LOG.info("TFLiteConverter wrote %s to %s", ", ".join(variants), tflite.uri)
