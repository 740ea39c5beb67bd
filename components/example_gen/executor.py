"""Executor of DetectionExampleGen: exec properties -> ``IngestOptions`` -> one ``ingest`` call."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tfx.types import artifact_utils

from components.local_beam import LocalBeamExecutor

EXAMPLES_KEY = "examples"
# What TFX's own ExampleGen records, so TFX readers (tfx_bsl) understand the artifact.
PAYLOAD_FORMAT = ("payload_format", "FORMAT_TF_EXAMPLE")
FILE_FORMAT = ("file_format", "tfrecords_gzip")


def _mapping(value: Any) -> dict:
    # Dict parameters reach the executor as JSON text when run by an orchestrator.
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value)


def options_from_properties(exec_properties: Mapping[str, Any], output_uri: str):
    """The ``IngestOptions`` that the component's parameters describe."""
    from model_maker.core.data.ingest import IngestOptions

    ratios = _mapping(exec_properties.get("split_ratios")) or {"train": 0.8, "eval": 0.2}
    return IngestOptions(
        format=exec_properties["format"],
        input=exec_properties["input"],
        output=output_uri,
        annotations=exec_properties.get("annotations") or "",
        split_ratios={k: float(v) for k, v in ratios.items()},
        split_files={k: str(v) for k, v in _mapping(exec_properties.get("split_files")).items()},
        split_image_dirs={
            k: str(v) for k, v in _mapping(exec_properties.get("split_image_dirs")).items()
        },
        strict=bool(exec_properties.get("strict", False)),
        keep_negatives=bool(exec_properties.get("keep_negatives", True)),
        num_shards=int(exec_properties.get("num_shards") or 0),
        rewrite_tfrecords=bool(exec_properties.get("rewrite_tfrecords", False)),
    )


class Executor(LocalBeamExecutor):
    """Writes ``Split-<name>/data_tfrecord-*.gz``, label_map.json, ``<split>_annotations.json``
    and stats.json into the Examples artifact and sets its ``split_names``."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        from model_maker.core.data.ingest import ingest

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        result = ingest(
            options_from_properties(exec_properties, examples.uri), self._beam_pipeline_args
        )
        examples.split_names = artifact_utils.encode_split_names(list(result.splits))
        examples.set_string_custom_property(*PAYLOAD_FORMAT)
        examples.set_string_custom_property(*FILE_FORMAT)
        examples.set_int_custom_property("num_classes", len(result.label_map.classes))
        for split in result.splits:
            examples.set_int_custom_property(f"num_images_{split}", result.images[split])
            examples.set_int_custom_property(f"num_boxes_{split}", result.boxes[split])
        examples.set_int_custom_property("num_issues", len(result.issues))
