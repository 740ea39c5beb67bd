"""DetectionExampleGen: a custom TFX Beam component whose parameters mirror ``DataConfig``.

Output: one standard ``Examples`` artifact (``split_names`` set) holding
``Split-<name>/data_tfrecord-*.gz``, ``label_map.json``,
``<split>_annotations.json`` and ``stats.json``. The Beam job takes the
pipeline's ``beam_pipeline_args``.
"""

from __future__ import annotations

from typing import Any

from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.example_gen import executor


class DetectionExampleGenSpec(ComponentSpec):
    """Parameters and output of DetectionExampleGen (see ``DataConfig``)."""

    PARAMETERS = {
        "format": ExecutionParameter(type=str),
        "input": ExecutionParameter(type=str),
        "annotations": ExecutionParameter(type=str, optional=True),
        "split_ratios": ExecutionParameter(type=dict[str, float], optional=True),
        "split_files": ExecutionParameter(type=dict[str, str], optional=True),
        "split_image_dirs": ExecutionParameter(type=dict[str, str], optional=True),
        "strict": ExecutionParameter(type=bool, optional=True),
        "keep_negatives": ExecutionParameter(type=bool, optional=True),
        "num_shards": ExecutionParameter(type=int, optional=True),
        "rewrite_tfrecords": ExecutionParameter(type=bool, optional=True),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class DetectionExampleGen(base_beam_component.BaseBeamComponent):
    """Turns COCO, Pascal VOC, TFRecord or class folders into an Examples artifact."""

    SPEC_CLASS = DetectionExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input: str,  # noqa: A002 - mirrors DataConfig.input
        format: str = "coco",  # noqa: A002 - mirrors DataConfig.format
        annotations: str = "",
        split_ratios: dict[str, float] | None = None,
        split_files: dict[str, str] | None = None,
        split_image_dirs: dict[str, str] | None = None,
        strict: bool = False,
        keep_negatives: bool = True,
        num_shards: int = 0,
        rewrite_tfrecords: bool = False,
    ):
        spec = DetectionExampleGenSpec(
            format=format,
            input=input,
            annotations=annotations,
            split_ratios=dict(split_ratios or {"train": 0.8, "eval": 0.2}),
            split_files=dict(split_files or {}),
            split_image_dirs=dict(split_image_dirs or {}),
            strict=strict,
            keep_negatives=keep_negatives,
            num_shards=num_shards,
            rewrite_tfrecords=rewrite_tfrecords,
            examples=channel.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)

    @classmethod
    def from_data_config(cls, data: Any) -> DetectionExampleGen:
        """Build from a ``pipeline.config.DataConfig`` (or anything with its fields)."""
        return cls(
            input=data.input,
            format=data.format,
            annotations=data.annotations,
            split_ratios=dict(data.split.ratios),
            split_files=dict(data.split.files),
            split_image_dirs=dict(data.split.image_dirs),
            strict=data.strict,
            keep_negatives=data.keep_negatives,
            num_shards=data.num_shards,
        )
