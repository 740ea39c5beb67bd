"""Read-only view of the ML Metadata stores of local runs, as typed dataclasses.

A pipeline root holds ``metadata.sqlite`` (see ``pipeline/runners.py``). TFX's
portable orchestrator (LocalDagRunner, BeamDagRunner) records in it:

- contexts ``pipeline`` (the pipeline name), ``pipeline_run`` (the run id, a
  child of the pipeline context) and ``node`` (``"<pipeline>.<component id>"``);
- one execution per component and run, in the run's and the node's contexts,
  whose ``last_known_state`` is COMPLETE, CACHED (a cache hit: no work done,
  the OUTPUT events point at the artifacts of the earlier run), FAILED,
  RUNNING, NEW or CANCELED; its exec properties are custom properties (keys
  starting with ``__`` are TFX-internal: ``__execution_result__`` holds the
  failure message); older stores keep the state in a ``state`` custom property;
- INPUT and OUTPUT events between executions and artifacts (the lineage).

Artifacts of a run are found through the events of the run's executions, not
through attributions, so runs that were entirely cache hits still show the
artifacts they used. The store is opened READONLY; nothing here writes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_maker.core.metrics_document import candidate_metric, read_metrics

STORE_FILE = "metadata.sqlite"
PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
#: Artifact property keys TFX adds to every artifact; hidden from the property lists.
BOOKKEEPING_KEYS = frozenset({"tfx_version", "is_external"})
#: Component ids whose outputs hold the evaluation and the training logs.
EVALUATION_TYPE = "ModelEvaluation"
BLESSING_TYPE = "ModelBlessing"
MODEL_RUN_TYPE = "ModelRun"
PUSHED_TYPE = "PushedModel"
_SEARCH_DEPTH = 2
#: The ``task`` of metrics.json (a document without one is a detection evaluation),
#: also the Trainer's ``options.model.task``.
DETECTION = "object_detection"
CLASSIFICATION = "image_classification"
#: The metric the runs list shows per task (fractions 0..1); AP for any other task.
HEADLINE_METRICS = {DETECTION: "AP", CLASSIFICATION: "top1"}

# States of metadata_store_pb2.Execution.State, by number, so this module does
# not import ml_metadata at import time.
_STATE_NAMES = {
    0: "UNKNOWN",
    1: "NEW",
    2: "RUNNING",
    3: "COMPLETE",
    4: "FAILED",
    5: "CACHED",
    6: "CANCELED",
}
# The ``state`` custom property of older TFX stores, mapped to the same names.
_LEGACY_STATES = {
    "new": "NEW",
    "running": "RUNNING",
    "complete": "COMPLETE",
    "published": "COMPLETE",
    "cached": "CACHED",
    "failed": "FAILED",
    "canceled": "CANCELED",
}


class StoreError(Exception):
    """A store that cannot be read; ``kind`` is missing, empty, busy or corrupt."""

    def __init__(self, kind: str, path: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path


@dataclass(frozen=True)
class StoreRef:
    """One ML Metadata store found under the dashboard root.

    Attributes:
      key: folder of the pipeline root relative to the dashboard root ("." for the root).
      path: absolute path of ``metadata.sqlite``.
    """

    key: str
    path: str

    @property
    def pipeline_root(self) -> str:
        return os.path.dirname(self.path)


@dataclass(frozen=True)
class ArtifactInfo:
    """An artifact as an execution saw it.

    Attributes:
      id: MLMD artifact id.
      type_name: artifact type (Examples, Model, ModelRun, components.TFLiteModel...).
      uri: where its files are.
      key: the input or output name of the event (e.g. ``model``).
      state: MLMD artifact state (LIVE, ...).
      properties: properties and custom properties, TFX bookkeeping keys removed.
      producer: component id of the execution that wrote it ("" when unknown).
      created: creation time (UTC).
    """

    id: int
    type_name: str
    uri: str
    key: str = ""
    state: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    producer: str = ""
    created: dt.datetime | None = None


@dataclass(frozen=True)
class ExecutionInfo:
    """One component execution of a run.

    Attributes:
      id: MLMD execution id.
      component: component id (``Trainer``), from the node context.
      type_name: execution type (the component's class path).
      state: COMPLETE, CACHED, FAILED, RUNNING, NEW, CANCELED or UNKNOWN.
      started: creation time of the execution (UTC).
      finished: last update time (UTC).
      duration_s: ``finished - started`` in seconds.
      properties: exec properties (TFX-internal keys removed).
      message: failure message recorded by TFX ("" when none).
      inputs: input artifacts.
      outputs: output artifacts.
    """

    id: int
    component: str
    type_name: str
    state: str
    started: dt.datetime | None
    finished: dt.datetime | None
    duration_s: float | None
    properties: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    inputs: list[ArtifactInfo] = field(default_factory=list)
    outputs: list[ArtifactInfo] = field(default_factory=list)

    @property
    def cached(self) -> bool:
        return self.state == "CACHED"


@dataclass(frozen=True)
class RunRow:
    """One line of the runs list.

    Attributes:
      store: key of the store (see :class:`StoreRef`).
      pipeline: pipeline name.
      run_id: TFX pipeline run id (the ``pipeline_run`` context name).
      context_id: MLMD id of the run context.
      started: run start (creation of the run context, UTC).
      status: complete, failed, running, canceled or empty (no executions).
      duration_s: from the run start to the last execution update, seconds.
      executions: number of component executions.
      cached: how many of them were cache hits.
      task: object_detection, image_classification (from metrics.json, else from the
        Trainer's options) or "" when neither says.
      candidate: the evaluated candidate variant ("" without an evaluation).
      metric: the headline metric of the task (AP, top1).
      candidate_value: the candidate's headline metric (0..1), None when unknown.
      blessed: the blessing decision, None without a ModelBlessing.
    """

    store: str
    pipeline: str
    run_id: str
    context_id: int
    started: dt.datetime | None
    status: str
    duration_s: float | None
    executions: int = 0
    cached: int = 0
    task: str = ""
    candidate: str = ""
    metric: str = "AP"
    candidate_value: float | None = None
    blessed: bool | None = None

    @property
    def ref(self) -> str:
        """``store|run_id``, how the comparison page names a run."""
        return f"{self.store}|{self.run_id}"


@dataclass(frozen=True)
class BlessingInfo:
    """The blessing of a run: the decision and why.

    Attributes:
      blessed: the decision.
      candidate: candidate variant.
      reason: the reasons, as recorded.
      details: blessing entry of metrics.json (metric, values, threshold...).
    """

    blessed: bool
    candidate: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunDetail:
    """Everything the run, evaluation, training and comparison pages show.

    Attributes:
      row: the run's line of the runs list.
      executions: component executions in topological order.
      edges: (producer component, consumer component) pairs of the DAG.
      evaluation_uri: folder of the ModelEvaluation artifact ("" when none).
      metrics: metrics.json of the evaluation ({} when missing or unreadable).
      blessing: the blessing, None without a ModelBlessing.
      log_dirs: (component, folder) of ModelRun artifacts (TensorBoard logs).
      config: flattened exec properties ``"<component>.<key>" -> value``: the
        run's resolved settings as the components received them.
      pushed: PushedModel properties ({} when nothing was pushed).
    """

    row: RunRow
    executions: list[ExecutionInfo]
    edges: list[tuple[str, str]]
    evaluation_uri: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    blessing: BlessingInfo | None = None
    log_dirs: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    pushed: dict[str, Any] = field(default_factory=dict)


# --- discovery ---------------------------------------------------------------------------


def find_stores(root: str) -> list[StoreRef]:
    """Stores at ``root`` and in its sub-folders (two levels), sorted by key."""
    root = os.path.abspath(root)
    found: list[StoreRef] = []
    if not os.path.isdir(root):
        return found
    for current, dirs, files in os.walk(root):
        depth = os.path.relpath(current, root).count(os.sep) + (current != root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < _SEARCH_DEPTH else []
        if STORE_FILE in files:
            found.append(
                StoreRef(os.path.relpath(current, root), os.path.join(current, STORE_FILE))
            )
    return sorted(found, key=lambda ref: ref.key)


# --- values -------------------------------------------------------------------------------


def _time(ms: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000.0, tz=dt.UTC) if ms else None


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    raw = getattr(value, kind)
    if kind in ("struct_value", "proto_value"):
        # deferred: protobuf takes ~0.1 s, and `qatflow --help` imports this module
        from google.protobuf import json_format

        return json_format.MessageToDict(raw)
    return raw


def _properties(message: Any, hide: Iterable[str] = ()) -> dict[str, Any]:
    hidden = set(hide)
    out = {}
    for mapping in (message.properties, message.custom_properties):
        for key, value in mapping.items():
            if key in hidden or key.startswith("__"):
                continue
            out[key] = _value(value)
    return dict(sorted(out.items()))


def _execution_state(execution: Any) -> str:
    state = _STATE_NAMES.get(int(execution.last_known_state), "UNKNOWN")
    if state == "UNKNOWN" and "state" in execution.custom_properties:
        legacy = execution.custom_properties["state"].string_value.lower()
        state = _LEGACY_STATES.get(legacy, "UNKNOWN")
    return state


def _failure_message(execution: Any) -> str:
    value = execution.custom_properties.get("__execution_result__")
    if value is None:
        return ""
    text = value.string_value
    try:
        result = json.loads(text)
    except ValueError:
        return text
    return str(result.get("resultMessage") or result.get("result_message") or text)


def run_status(states: Iterable[str]) -> str:
    """A run's status from its execution states."""
    states = list(states)
    if not states:
        return "empty"
    if "FAILED" in states:
        return "failed"
    if "RUNNING" in states or "NEW" in states:
        return "running"
    if "CANCELED" in states:
        return "canceled"
    return "complete"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _config_value(value: Any) -> Any:
    # Exec properties that are JSON documents (hparams, variants) are shown parsed.
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def task_of(metrics: Mapping[str, Any]) -> str:
    """The task of a metrics.json document (no ``task`` key: object detection)."""
    task = metrics.get("task")
    return task if isinstance(task, str) and task else DETECTION


def headline_metric(task: str) -> str:
    """The metric the runs list shows for ``task`` (AP for detection, top1 for classification)."""
    return HEADLINE_METRICS.get(task, HEADLINE_METRICS[DETECTION])


def headline(metrics: Mapping[str, Any]) -> tuple[str, str, str, float | None]:
    """(task, headline metric, candidate variant, its value) from a metrics.json document."""
    task = task_of(metrics)
    metric = headline_metric(task)
    candidate, value = candidate_metric(metrics, metric)
    return task, metric, candidate, value


def _recorded_task(executions: Iterable[Any]) -> str:
    """``model.task`` of the first execution whose JSON ``options`` names one ("" if none)."""
    for execution in executions:
        value = execution.custom_properties.get("options")
        if value is None or not value.string_value.startswith("{"):
            continue
        try:
            model = json.loads(value.string_value).get("model")
        except ValueError:
            continue
        task = model.get("task") if isinstance(model, dict) else None
        if isinstance(task, str) and task:
            return task
    return ""


# --- the reader ----------------------------------------------------------------------------


class MetadataReader:
    """Read-only access to one store; raises :class:`StoreError` when it cannot be read."""

    def __init__(self, ref: StoreRef) -> None:
        self.ref = ref
        path = ref.path
        if not os.path.isfile(path):
            raise StoreError("missing", path, f"no ML Metadata store at {path}")
        if os.path.getsize(path) == 0:
            raise StoreError("empty", path, f"the store {path} is empty (no run has written it)")
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                raise StoreError("corrupt", path, f"{path} is not an SQLite database")
        # deferred: ML Metadata is heavy (~0.6 s); listing stores and `--help` do without it
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2

        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        try:
            self._store = metadata_store.MetadataStore(config)
            self._artifact_types = {t.id: t.name for t in self._store.get_artifact_types()}
            self._execution_types = {t.id: t.name for t in self._store.get_execution_types()}
            self._context_types = {t.id: t.name for t in self._store.get_context_types()}
        except Exception as exc:  # noqa: BLE001 - MLMD raises its own error classes
            raise _read_error(path, exc) from None

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._store, method)(*args)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "NotFoundError":
                return []
            raise _read_error(self.ref.path, exc) from None

    # -- runs ------------------------------------------------------------------------

    def _run_contexts(self) -> list[tuple[Any, str]]:
        """(run context, pipeline name), newest first."""
        runs = self._call("get_contexts_by_type", RUN_CONTEXT)
        owner: dict[int, str] = {}
        for pipeline in self._call("get_contexts_by_type", PIPELINE_CONTEXT):
            for child in self._call("get_children_contexts_by_context", pipeline.id):
                owner[child.id] = pipeline.name
        runs.sort(key=lambda c: (c.create_time_since_epoch, c.id), reverse=True)
        return [(ctx, owner.get(ctx.id, "")) for ctx in runs]

    def _components(self, executions: Iterable[Any]) -> dict[int, str]:
        """execution id -> component id, from each execution's node context."""
        out: dict[int, str] = {}
        for execution in executions:
            for context in self._call("get_contexts_by_execution", execution.id):
                if self._context_types.get(context.type_id) == NODE_CONTEXT:
                    name = context.name
                    out[execution.id] = name.split(".", 1)[1] if "." in name else name
        return out

    def run_index(self) -> list[tuple[dt.datetime | None, str, str]]:
        """(start, run id, pipeline) of every run, newest first; one cheap query."""
        return [
            (_time(ctx.create_time_since_epoch), ctx.name, pipeline)
            for ctx, pipeline in self._run_contexts()
        ]

    def runs(self, run_ids: Iterable[str] | None = None) -> list[RunRow]:
        """Rows of the runs named (all when None), newest first."""
        contexts = self._run_contexts()
        if run_ids is not None:
            wanted = set(run_ids)
            contexts = [(c, p) for c, p in contexts if c.name in wanted]
        return [self._row(ctx, pipeline)[0] for ctx, pipeline in contexts]

    def _row(
        self, ctx: Any, pipeline: str
    ) -> tuple[RunRow, list[Any], dict[int, list[Any]], dict[int, Any]]:
        executions = self._call("get_executions_by_context", ctx.id)
        events = self._call("get_events_by_execution_ids", [e.id for e in executions])
        by_execution: dict[int, list[Any]] = {}
        for event in events:
            by_execution.setdefault(event.execution_id, []).append(event)
        ids = sorted({event.artifact_id for event in events})
        artifacts = {a.id: a for a in self._call("get_artifacts_by_id", ids)} if ids else {}
        states = [_execution_state(e) for e in executions]
        last = max((e.last_update_time_since_epoch for e in executions), default=0)
        duration = (last - ctx.create_time_since_epoch) / 1000.0 if last else None
        candidate, value, blessed = "", None, None
        task = ""
        evaluation = self._newest_output(executions, by_execution, artifacts, EVALUATION_TYPE)
        document = read_metrics(evaluation.uri) if evaluation is not None else {}
        if document:
            task, _, candidate, value = headline(document)
        else:
            # No readable evaluation (failed or still running): the Trainer's options say.
            task = _recorded_task(executions)
        blessing = self._newest_output(executions, by_execution, artifacts, BLESSING_TYPE)
        if blessing is not None and "blessed" in blessing.custom_properties:
            blessed = blessing.custom_properties["blessed"].int_value == 1
            recorded = blessing.custom_properties.get("candidate")
            candidate = candidate or (recorded.string_value if recorded is not None else "")
        row = RunRow(
            store=self.ref.key,
            pipeline=pipeline,
            run_id=ctx.name,
            context_id=ctx.id,
            started=_time(ctx.create_time_since_epoch),
            status=run_status(states),
            duration_s=duration,
            executions=len(executions),
            cached=states.count("CACHED"),
            task=task,
            candidate=candidate,
            metric=headline_metric(task),
            candidate_value=value,
            blessed=blessed,
        )
        return row, executions, by_execution, artifacts

    def _newest_output(
        self,
        executions: list[Any],
        events: Mapping[int, list[Any]],
        artifacts: Mapping[int, Any],
        type_name: str,
    ) -> Any:
        found = [
            artifacts[event.artifact_id]
            for execution in executions
            for event in events.get(execution.id, [])
            if _is_output(event)
            and event.artifact_id in artifacts
            and self._artifact_types.get(artifacts[event.artifact_id].type_id) == type_name
        ]
        return max(found, key=lambda a: (a.create_time_since_epoch, a.id)) if found else None

    # -- one run -----------------------------------------------------------------------

    def run(self, run_id: str) -> RunDetail | None:
        """The run named ``run_id``, or None when the store has no such run."""
        match = next(((c, p) for c, p in self._run_contexts() if c.name == run_id), None)
        if match is None:
            return None
        ctx, pipeline = match
        row, executions, events, artifacts = self._row(ctx, pipeline)
        components = self._components(executions)
        producer: dict[int, str] = {}
        for execution in executions:
            for event in events.get(execution.id, []):
                if _is_output(event):
                    producer[event.artifact_id] = components.get(execution.id, "")
        infos = []
        for execution in executions:
            inputs, outputs = [], []
            for event in events.get(execution.id, []):
                artifact = artifacts.get(event.artifact_id)
                if artifact is None:
                    continue
                info = self._artifact_info(artifact, event, producer.get(artifact.id, ""))
                (outputs if _is_output(event) else inputs).append(info)
            infos.append(self._execution_info(execution, components, inputs, outputs))
        edges = sorted(
            {
                (a.producer, e.component)
                for e in infos
                for a in e.inputs
                if a.producer and a.producer != e.component
            }
        )
        infos = _topological(infos, edges)
        detail = RunDetail(row=row, executions=infos, edges=edges)
        return self._with_outputs(detail)

    def _artifact_info(self, artifact: Any, event: Any, producer: str) -> ArtifactInfo:
        from ml_metadata.proto import metadata_store_pb2  # deferred: ML Metadata is heavy

        key = next((s.key for s in event.path.steps if s.WhichOneof("value") == "key"), "")
        return ArtifactInfo(
            id=artifact.id,
            type_name=self._artifact_types.get(artifact.type_id, artifact.type or "?"),
            uri=artifact.uri,
            key=key,
            state=metadata_store_pb2.Artifact.State.Name(artifact.state),
            properties=_properties(artifact, BOOKKEEPING_KEYS),
            producer=producer,
            created=_time(artifact.create_time_since_epoch),
        )

    def _execution_info(
        self,
        execution: Any,
        components: Mapping[int, str],
        inputs: list[ArtifactInfo],
        outputs: list[ArtifactInfo],
    ) -> ExecutionInfo:
        started = execution.create_time_since_epoch
        finished = execution.last_update_time_since_epoch
        type_name = self._execution_types.get(execution.type_id, execution.type or "")
        return ExecutionInfo(
            id=execution.id,
            component=components.get(execution.id) or type_name.rsplit(".", 1)[-1],
            type_name=type_name,
            state=_execution_state(execution),
            started=_time(started),
            finished=_time(finished),
            duration_s=(finished - started) / 1000.0 if started and finished else None,
            properties={
                k: _config_value(v) for k, v in _properties(execution).items() if k != "state"
            },
            message=_failure_message(execution),
            inputs=sorted(inputs, key=lambda a: (a.key, a.id)),
            outputs=sorted(outputs, key=lambda a: (a.key, a.id)),
        )

    def _with_outputs(self, detail: RunDetail) -> RunDetail:
        evaluation, blessing, pushed = None, None, {}
        log_dirs = []
        config: dict[str, Any] = {}
        for execution in detail.executions:
            config.update(flatten(execution.properties, execution.component + "."))
            for artifact in execution.outputs:
                if artifact.type_name == EVALUATION_TYPE:
                    evaluation = artifact
                elif artifact.type_name == BLESSING_TYPE:
                    blessing = artifact
                elif artifact.type_name == MODEL_RUN_TYPE:
                    log_dirs.append((execution.component, artifact.uri))
                elif artifact.type_name == PUSHED_TYPE:
                    pushed = dict(artifact.properties)
        metrics = read_metrics(evaluation.uri) if evaluation else {}
        info = None
        if blessing is not None or metrics.get("blessing"):
            decision = metrics.get("blessing") or {}
            props = blessing.properties if blessing else {}
            blessed = props.get("blessed", 1 if decision.get("blessed") else 0) == 1
            reason = str(props.get("reason") or "; ".join(decision.get("reasons") or []))
            info = BlessingInfo(
                blessed=blessed,
                candidate=str(props.get("candidate") or decision.get("candidate") or ""),
                reason=reason,
                details=dict(decision),
            )
        return dataclasses.replace(
            detail,
            evaluation_uri=evaluation.uri if evaluation else "",
            metrics=metrics,
            blessing=info,
            log_dirs=log_dirs,
            config=dict(sorted(config.items())),
            pushed=pushed,
        )


def _read_error(path: str, exc: Exception) -> StoreError:
    if "locked" in str(exc).lower() or "busy" in str(exc).lower():
        return StoreError("busy", path, f"{path} is busy (a run is writing to it); reload")
    return StoreError("corrupt", path, f"cannot read {path}: {exc}")


def _is_output(event: Any) -> bool:
    # Event.Type: OUTPUT = 4, DECLARED_OUTPUT = 2, INTERNAL_OUTPUT = 6, PENDING_OUTPUT = 8.
    return int(event.type) in (2, 4, 6, 8)


def _levels(components: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    out = {c: 0 for c in components}
    edges = list(edges)
    for _ in range(len(out)):
        changed = False
        for src, dst in edges:
            if src in out and dst in out and out[dst] <= out[src]:
                out[dst] = out[src] + 1
                changed = True
        if not changed:
            break
    return out


def _topological(infos: list[ExecutionInfo], edges: list[tuple[str, str]]) -> list[ExecutionInfo]:
    """Executions ordered producers first, ties by start time."""
    level = _levels((e.component for e in infos), edges)
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(infos, key=lambda e: (level[e.component], e.started or far, e.id))


def levels(detail: RunDetail) -> dict[str, int]:
    """Depth of every component in the run's DAG (0 for sources)."""
    return _levels((e.component for e in detail.executions), detail.edges)
