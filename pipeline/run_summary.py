"""The run summary's contract: what a finished local run produced, and ``latest_run.json``.

``qatflow run`` (through :func:`pipeline.runners.run_local`) writes
``<pipeline_root>/latest_run.json`` after every run; the dashboard reads it to
tell which run the root's ``config.yaml`` belongs to. The summary is read from
ML Metadata through the dashboard's reader (:class:`dashboard.store.MetadataReader`),
the one place that knows how TFX lays out runs, executions and artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from dashboard.store import MetadataReader, StoreRef
from model_maker.core.errors import DataError

METADATA_FILE = "metadata.sqlite"
LATEST_RUN_FILE = "latest_run.json"
REPORT_MD = "report.md"


def metadata_path(pipeline_root: str) -> str:
    """The ML Metadata SQLite store of local runs under ``pipeline_root``."""
    return os.path.join(pipeline_root, METADATA_FILE)


@dataclasses.dataclass(frozen=True)
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
        """The content of ``latest_run.json`` (the report stays in report.md)."""
        out = dataclasses.asdict(self)
        out.pop("report_markdown")
        return out


def summarize_run(pipeline_root: str, pipeline_name: str) -> RunSummary:
    """The newest run of ``pipeline_name`` in the ML Metadata store under ``pipeline_root``.

    Raises:
      DataError: the store has no run of that pipeline.
    """
    reader = MetadataReader(StoreRef(".", metadata_path(pipeline_root)))
    rows = [row for row in reader.runs() if row.pipeline in (pipeline_name, "")]
    if not rows:
        raise DataError(f"no run of pipeline {pipeline_name!r} in {pipeline_root}")
    detail = reader.run(rows[0].run_id)
    report = ""
    if detail.evaluation_uri:
        path = os.path.join(detail.evaluation_uri, REPORT_MD)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                report = fh.read()
    return RunSummary(
        pipeline_name=pipeline_name,
        run_id=detail.row.run_id,
        pipeline_root=pipeline_root,
        evaluation=detail.evaluation_uri,
        blessed=bool(detail.blessing and detail.blessing.blessed),
        pushed=str(detail.pushed.get("pushed_destination") or ""),
        push_reason=str(detail.pushed.get("reason") or ""),
        report_markdown=report,
    )


def write_latest_run(summary: RunSummary) -> str:
    """Write ``<pipeline_root>/latest_run.json``; return its path."""
    path = os.path.join(summary.pipeline_root, LATEST_RUN_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(summary.to_json(), fh, indent=2)
    return path


def read_latest_run(pipeline_root: str) -> dict[str, Any]:
    """``latest_run.json`` of ``pipeline_root`` ({} when missing or not a JSON object)."""
    try:
        with open(os.path.join(pipeline_root, LATEST_RUN_FILE), encoding="utf-8") as fh:
            latest = json.load(fh)
    except (OSError, ValueError):
        return {}
    return latest if isinstance(latest, dict) else {}
