"""Local runs of the pipeline: TFX's BeamDagRunner or LocalDagRunner over an SQLite MLMD store.

After a run, :func:`summarize_run` reads ML Metadata for the newest run of the
pipeline and returns where its evaluation and pushed model are, so the CLI can
print the float/PTQ/QAT table and write ``<pipeline_root>/latest_run.json``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from model_maker.core.errors import UsageError
from model_maker.core.pretrained_cache import PretrainedWeightsMissing, require_file, weights_file
from pipeline.config import PipelineConfig
from pipeline.run_summary import (  # noqa: F401 - LATEST_RUN_FILE and RunSummary: API
    LATEST_RUN_FILE,
    RunSummary,
    metadata_path,
    summarize_run,
    write_latest_run,
)

LOG = logging.getLogger("qatflow.runner")


def local_beam_args(config: PipelineConfig) -> list[str]:
    """Beam arguments of the data-parallel components for a local run."""
    workers = config.runner.direct_num_workers or os.cpu_count() or 1
    # One worker runs in this process: a worker process would only add its start-up
    # (importing TensorFlow) to the run.
    mode = "multi_processing" if workers > 1 else "in_memory"
    args = [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    return args + list(config.runner.beam_pipeline_args)


def preflight(config: PipelineConfig) -> None:
    """Fail before any work when this machine lacks what the config needs.

    Today: the offline ImageNet backbone of ``model.uri: imagenet`` must be in
    the cache (a run would otherwise ingest the data and only fail in the Trainer).

    Raises:
      UsageError: naming ``make pretrained``, the command that fills the cache.
    """
    backbone = config.model.offline_backbone()
    if not backbone:
        return
    try:
        require_file(weights_file(backbone))
    except PretrainedWeightsMissing as exc:
        raise UsageError(f"model.uri {config.model.uri!r}: {exc}") from None


def run_local(config: PipelineConfig) -> RunSummary:
    """Check the machine (:func:`preflight`), run the pipeline of ``config`` locally
    and summarise the run."""
    preflight(config)
    # deferred: TFX and TensorFlow load only when a run starts
    from tfx.orchestration import metadata

    from pipeline.pipeline import create_pipeline

    root = os.path.abspath(config.runner.pipeline_root)
    os.makedirs(root, exist_ok=True)
    tfx_pipeline = create_pipeline(
        config,
        pipeline_root=root,
        data_input=config.data.input,
        data_annotations=config.data.annotations,
        push_destination=config.push.destination or os.path.join(root, "serving"),
        metadata_connection_config=metadata.sqlite_metadata_connection_config(metadata_path(root)),
        beam_pipeline_args=local_beam_args(config),
    )
    if config.runner.kind == "beam":
        # deferred: TFX loads only when a pipeline runs or compiles
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        runner: Any = BeamDagRunner()
    else:
        # deferred: TFX loads only when a pipeline runs or compiles
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner

        runner = LocalDagRunner()
    LOG.info("running %s with %s (pipeline root %s)", config.name, type(runner).__name__, root)
    runner.run(tfx_pipeline)
    summary = summarize_run(root, config.name)
    write_latest_run(summary)
    return summary
