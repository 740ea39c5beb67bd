"""Executor of DetectionExampleGen: the ``options`` JSON -> ``IngestOptions`` -> ``ingest``."""

from __future__ import annotations

from typing import Any

from tfx.types import artifact_utils

from components.local_beam import LocalBeamExecutor
from model_maker.core.data.ingest import ingest
from model_maker.core.data.options import IngestOptions
from model_maker.core.settings import from_json, replace

OPTIONS_KEY = "options"
EXAMPLES_KEY = "examples"
# What TFX's own ExampleGen records, so TFX readers (tfx_bsl) understand the artifact.
PAYLOAD_FORMAT = ("payload_format", "FORMAT_TF_EXAMPLE")
FILE_FORMAT = ("file_format", "tfrecords_gzip")


class Executor(LocalBeamExecutor):
    """Writes ``Split-<name>/data_tfrecord-*.gz``, label_map.json, ``<split>_annotations.json``
    and stats.json into the Examples artifact and sets its ``split_names``."""

    def Do(  # noqa: N802 - the TFX executor interface
        self,
        input_dict: dict[str, list],
        output_dict: dict[str, list],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        options = from_json(IngestOptions, exec_properties.get(OPTIONS_KEY))
        result = ingest(replace(options, output=examples.uri), self._beam_pipeline_args)
        examples.split_names = artifact_utils.encode_split_names(list(result.splits))
        examples.set_string_custom_property(*PAYLOAD_FORMAT)
        examples.set_string_custom_property(*FILE_FORMAT)
        examples.set_int_custom_property("num_classes", len(result.label_map.classes))
        for split in result.splits:
            examples.set_int_custom_property(f"num_images_{split}", result.images[split])
            examples.set_int_custom_property(f"num_boxes_{split}", result.boxes[split])
        examples.set_int_custom_property("num_issues", len(result.issues))
