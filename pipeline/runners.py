"""Local runs of the pipeline: TFX's BeamDagRunner or LocalDagRunner over an SQLite MLMD store.

After a run, :func:`summarize_run` reads ML Metadata for the newest run of the
pipeline and returns where its evaluation and pushed model are, so the CLI can
print the float/PTQ/QAT table and write ``<pipeline_root>/latest_run.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from pipeline.config import PipelineConfig

LOG = logging.getLogger("qatflow.runner")

METADATA_FILE = "metadata.sqlite"
LATEST_RUN_FILE = "latest_run.json"


def metadata_path(pipeline_root: str) -> str:
    """The ML Metadata SQLite store of local runs under ``pipeline_root``."""
    return os.path.join(pipeline_root, METADATA_FILE)


def local_beam_args(config: PipelineConfig) -> list[str]:
    """Beam arguments of the data-parallel components for a local run."""
    workers = config.runner.direct_num_workers or os.cpu_count() or 1
    # One worker runs in this process: a worker process would only add its start-up
    # (importing TensorFlow) to the run.
    mode = "multi_processing" if workers > 1 else "in_memory"
    args = [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    return args + list(config.runner.beam_pipeline_args)


@dataclasses.dataclass
class RunSummary:
    """What a finished run produced.

    Attributes:
      pipeline_name: name of the pipeline.
      run_id: the TFX pipeline run id (the run's context name in ML Metadata).
      pipeline_root: root of artifacts and metadata.
      evaluation: folder of the Evaluator's output (metrics.json, report.md, report.html).
      blessed: whether the candidate was blessed.
      pushed: folder the model was pushed to, or "" when nothing was pushed.
      push_reason: the Pusher's reason (why it pushed, skipped or refused).
      report_markdown: the Evaluator's Markdown comparison table.
    """

    pipeline_name: str
    run_id: str
    pipeline_root: str
    evaluation: str = ""
    blessed: bool = False
    pushed: str = ""
    push_reason: str = ""
    report_markdown: str = ""

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("report_markdown")
        return out


def run_local(config: PipelineConfig) -> RunSummary:
    """Run the pipeline of ``config`` locally and summarise the run."""
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
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

        runner: Any = BeamDagRunner()
    else:
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner

        runner = LocalDagRunner()
    LOG.info("running %s with %s (pipeline root %s)", config.name, type(runner).__name__, root)
    runner.run(tfx_pipeline)
    summary = summarize_run(root, config.name)
    with open(os.path.join(root, LATEST_RUN_FILE), "w", encoding="utf-8") as fh:
        json.dump(summary.to_json(), fh, indent=2)
    return summary


def _newest(items: list[Any]) -> Any:
    return max(items, key=lambda item: (item.create_time_since_epoch, item.id)) if items else None


def summarize_run(pipeline_root: str, pipeline_name: str) -> RunSummary:
    """Read the newest run of ``pipeline_name`` from the MLMD store under ``pipeline_root``."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path(pipeline_root))
    )
    runs = [
        ctx
        for ctx in store.get_contexts_by_type("pipeline_run")
        if _belongs_to(store, ctx, pipeline_name)
    ]
    run = _newest(runs)
    if run is None:
        raise RuntimeError(f"no run of pipeline {pipeline_name!r} in {pipeline_root}")
    summary = RunSummary(pipeline_name=pipeline_name, run_id=run.name, pipeline_root=pipeline_root)
    artifacts = store.get_artifacts_by_context(run.id)
    types = {t.id: t.name for t in store.get_artifact_types()}
    by_type: dict[str, list[Any]] = {}
    for artifact in artifacts:
        by_type.setdefault(types.get(artifact.type_id, ""), []).append(artifact)
    evaluation = _newest(by_type.get("ModelEvaluation", []))
    if evaluation is not None:
        summary.evaluation = evaluation.uri
        report = os.path.join(evaluation.uri, "report.md")
        if os.path.exists(report):
            with open(report, encoding="utf-8") as fh:
                summary.report_markdown = fh.read()
    blessing = _newest(by_type.get("ModelBlessing", []))
    if blessing is not None:
        summary.blessed = _custom_int(blessing, "blessed") == 1
    pushed = _newest(by_type.get("PushedModel", []))
    if pushed is not None:
        summary.pushed = _custom_str(pushed, "pushed_destination")
        summary.push_reason = _custom_str(pushed, "reason")
    return summary


def _belongs_to(store: Any, run_context: Any, pipeline_name: str) -> bool:
    parents = store.get_parent_contexts_by_context(run_context.id)
    if parents:
        return any(p.name == pipeline_name for p in parents)
    # Older stores link run and pipeline contexts only through executions.
    return True


def _custom_int(artifact: Any, key: str) -> int | None:
    value = artifact.custom_properties.get(key)
    return int(value.int_value) if value is not None else None


def _custom_str(artifact: Any, key: str) -> str:
    value = artifact.custom_properties.get(key)
    return value.string_value if value is not None else ""
