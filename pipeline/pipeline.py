"""``create_pipeline``: ExampleGen -> Trainer -> QATTrainer -> Converter -> Evaluator -> Pusher.

Every environment-dependent value (pipeline root, data location, push
destination, metadata connection, Beam arguments) is an argument; nothing is
read at import. The same function serves local runs and Kubeflow compilation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from model_maker.core import settings
from pipeline.config import PipelineConfig


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(
        [settings.to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_dir(pipeline_root: str, stage: str, *parts: Any) -> str:
    """A checkpoint folder that a rerun of the same settings finds again after a crash.

    Keyed by the settings that shape the stage's result, so a changed config
    never resumes from a checkpoint of other settings.
    """
    return os.path.join(pipeline_root, "checkpoints", f"{stage}-{_fingerprint(*parts)}")


def create_pipeline(
    config: PipelineConfig,
    *,
    pipeline_root: str,
    data_input: str,
    data_annotations: str,
    push_destination: str,
    metadata_connection_config: Any | None,
    beam_pipeline_args: Sequence[str] = (),
) -> Any:
    """Build the TFX pipeline for ``config``.

    Args:
      config: the validated pipeline config (model, training, QAT, conversion,
        evaluation settings; data format and splits).
      pipeline_root: root folder or URL of artifacts.
      data_input: dataset location (overrides config.data.input, e.g. gs:// on a cluster).
      data_annotations: COCO JSON location for the coco format.
      push_destination: where blessed models go.
      metadata_connection_config: ML Metadata connection (None on Kubeflow).
      beam_pipeline_args: Beam arguments for ExampleGen and Evaluator.
    """
    # deferred: TFX, TensorFlow and Beam load only when a pipeline is built, not with the config
    from tfx.orchestration import pipeline as tfx_pipeline

    from components.evaluator.component import Evaluator
    from components.example_gen.component import DetectionExampleGen
    from components.pusher.component import Pusher
    from components.qat_trainer.component import QATTrainer
    from components.tflite_converter.component import TFLiteConverter
    from components.trainer.component import Trainer

    stages = config.stages()
    ingest = settings.replace(stages.ingest, "data", input=data_input, annotations=data_annotations)
    example_gen = DetectionExampleGen(ingest)
    examples = example_gen.outputs["examples"]

    trainer = Trainer(
        examples,
        stages.trainer,
        checkpoint_dir=checkpoint_dir(pipeline_root, "trainer", ingest, stages.trainer),
    )
    components: list[Any] = [example_gen, trainer]

    qat_model = None
    if config.qat.enabled:
        qat_trainer = QATTrainer(
            examples,
            trainer.outputs["model"],
            stages.qat,
            checkpoint_dir=checkpoint_dir(pipeline_root, "qat", ingest, stages.trainer, stages.qat),
            accuracy_check=stages.qat_check,
        )
        components.append(qat_trainer)
        qat_model = qat_trainer.outputs["qat_model"]

    converter = TFLiteConverter(
        model=trainer.outputs["model"],
        qat_model=qat_model,
        examples=examples,
        options=stages.converter,
    )
    evaluator = Evaluator(
        examples=examples,
        tflite=converter.outputs["tflite"],
        model=trainer.outputs["model"],
        options=stages.evaluator,
    )
    pusher = Pusher(
        tflite=converter.outputs["tflite"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        destination=push_destination,
    )
    components += [converter, evaluator, pusher]

    return tfx_pipeline.Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.runner.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
