"""DetectionExampleGen: a custom TFX Beam component that ingests with ``IngestOptions``.

Output: one standard ``Examples`` artifact (``split_names`` set) holding
``Split-<name>/data_tfrecord-*.gz``, ``label_map.json``,
``<split>_annotations.json`` and ``stats.json``. The Beam job takes the
pipeline's ``beam_pipeline_args``.
"""

from __future__ import annotations

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.example_gen import executor
from model_maker.core.data.options import IngestOptions
from model_maker.core.errors import UsageError
from model_maker.core.settings import to_json


class DetectionExampleGenSpec(ComponentSpec):
    """Parameters and output of DetectionExampleGen."""

    PARAMETERS = {
        executor.OPTIONS_KEY: ExecutionParameter(type=str),  # JSON
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class DetectionExampleGen(base_beam_component.BaseBeamComponent):
    """Turns COCO, Pascal VOC, TFRecord or class folders into an Examples artifact.

    ``options`` is an :class:`~model_maker.core.data.options.IngestOptions` (the
    config's ``data`` section), carried as JSON; its ``output`` is the artifact's
    folder, set by the executor.
    """

    SPEC_CLASS = DetectionExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, options: IngestOptions) -> None:
        if options.output:
            raise UsageError(
                f"data.output {options.output!r}: the Examples artifact's folder is the output; "
                "leave it empty"
            )
        spec = DetectionExampleGenSpec(
            options=to_json(options),
            examples=channel.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
