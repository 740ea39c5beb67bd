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

from pipeline.config import PipelineConfig


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(
        [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
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
    from tfx.orchestration import pipeline as tfx_pipeline

    from components.evaluator.component import Evaluator
    from components.example_gen.component import DetectionExampleGen
    from components.pusher.component import Pusher
    from components.qat_trainer.component import QATTrainer
    from components.tflite_converter.component import TFLiteConverter
    from components.trainer.component import Trainer

    data = dataclasses.replace(config.data, input=data_input, annotations=data_annotations)
    example_gen = DetectionExampleGen.from_data_config(data)
    examples = example_gen.outputs["examples"]

    trainer = Trainer.from_config(
        examples,
        config.model,
        config.train,
        checkpoint_dir=checkpoint_dir(
            pipeline_root, "trainer", config.data, config.model, config.train
        ),
    )
    components: list[Any] = [example_gen, trainer]

    qat_model = None
    if config.qat.enabled:
        qat_trainer = QATTrainer.from_config(
            examples,
            trainer.outputs["model"],
            config.qat,
            checkpoint_dir=checkpoint_dir(
                pipeline_root, "qat", config.data, config.model, config.train, config.qat
            ),
        )
        components.append(qat_trainer)
        qat_model = qat_trainer.outputs["qat_model"]

    convert = config.convert
    converter = TFLiteConverter(
        model=trainer.outputs["model"],
        qat_model=qat_model,
        examples=examples,
        variants=convert.variants,
        int8_input_type=convert.int8_input_type,
        representative_samples=convert.representative_samples,
        max_detections=config.model.tflite_max_detections,
        score_threshold=convert.score_threshold,
        iou_threshold=convert.iou_threshold,
        with_nms=convert.with_nms,
    )
    evaluate = config.evaluate
    evaluator = Evaluator(
        examples=examples,
        tflite=converter.outputs["tflite"],
        model=trainer.outputs["model"],
        candidate=evaluate.candidate,
        metric=evaluate.metric,
        max_ap_drop=evaluate.max_ap_drop,
        latency_runs=evaluate.latency_runs,
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
