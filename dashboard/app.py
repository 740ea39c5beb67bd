"""The dashboard's Flask app: ``create_app(root)`` serves read-only pages over the runs under root.

Pages: the runs list (``/``: task and the candidate's headline metric, AP or
top-1), a run (``/run``: DAG, executions, lineage, settings), its evaluation
(``/evaluation``; detection: float/PTQ/QAT table, AP vs size and latency,
per-class AP, precision-recall curves of a class picked with ``pr_class=``;
classification: the table with top-1/top-5/macro-F1, top-1 per variant and vs
size and latency, per-class accuracy, the confusion matrix of a variant picked with
``matrix=``; both: the blessing, the worst int8 layers of the evaluation's
``layer_errors.json``, all of them behind a details element, and the layers
``ptq_mixed`` kept float), its gallery (``/gallery``; detection: eval images
with every variant's boxes, most different from float first, ``/gallery/image``
one image with a panel per variant; classification: the images a variant picked
with ``variant=`` got wrong; thumbnails from ``/gallery/thumbnail``, only out of the
run's own evaluation artifact), its training curves (``/training``: float and QAT
side by side, data from ``/api/training``), two runs side by side (``/compare``)
and the files of the pipeline root (``/files/...``, nothing outside root). Runs are
named by their store (folder of the pipeline root, relative to root) and run id.

Only requests whose ``Host`` names this machine's loopback (:data:`LOCAL_HOSTS`),
the bound address or an allowed name are answered; others get 400, so a web
page whose DNS name was rebound to 127.0.0.1 cannot read the runs.

State lives in the app (``app.extensions["qatflow_dashboard"]``): open stores
and computed rows, keyed by the store file's size and mtime, so a page is
recomputed only when a run wrote to the store.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import plotly
from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException

from dashboard import (
    charts,
    classification,
    files,
    gallery,
    layer_errors,
    pr_curves,
    store,
    tensorboard,
)
from model_maker.core.metrics_document import SUMMARY_KEYS
from pipeline.run_summary import read_latest_run

EXTENSION = "qatflow_dashboard"
_CACHE_SIZE = 2048
#: Seconds browsers may keep a gallery thumbnail (an artifact's files never change).
_THUMBNAIL_MAX_AGE = 300
#: Component id of the QATTrainer (also recognised by its execution type).
QAT_COMPONENT = "QATTrainer"
TASK_LABELS = {store.DETECTION: "detection", store.CLASSIFICATION: "classification"}
METRIC_LABELS = dict(classification.SUMMARY)
#: Host names always answered (with any port): this machine's loopback.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def host_name(host: str) -> str:
    """The name in a ``Host`` header or a host option, without port and IPv6 brackets.

    Lower case, no trailing dot: ``[::1]:8080`` -> ``::1``, ``Box.LAN.:80`` ->
    ``box.lan``; "" for a malformed value (a port that is not a number).
    """
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest or "0"
    elif host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        name, _, port = host.partition(":")
    else:
        name, port = host, "0"
    return name.rstrip(".") if port.isdigit() else ""


class DashboardState:
    """Stores found under ``root``, their readers and a bounded cache of computed values."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._lock = threading.RLock()
        self._readers: dict[str, tuple[tuple, store.MetadataReader]] = {}
        self._cache: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

    def stores(self) -> list[store.StoreRef]:
        return store.find_stores(self.root)

    def ref(self, key: str) -> store.StoreRef:
        found = next((r for r in self.stores() if r.key == key), None)
        if found is None:
            abort(404, f"no store {key!r} under {self.root}")
        return found

    @staticmethod
    def _signature(ref: store.StoreRef) -> tuple:
        out = []
        for suffix in ("", "-wal"):
            try:
                stat = os.stat(ref.path + suffix)
                out.append((stat.st_size, stat.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def reader(self, ref: store.StoreRef) -> tuple[tuple, store.MetadataReader]:
        """(signature, reader) of a store; reopened when the file changed."""
        with self._lock:
            signature = self._signature(ref)
            held = self._readers.get(ref.path)
            if held is None or held[0] != signature:
                held = (signature, store.MetadataReader(ref))
                self._readers[ref.path] = held
            return held

    def cached(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            value = compute()
            self._cache[key] = value
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return value

    def index(self, ref: store.StoreRef) -> list[tuple[Any, str, str]]:
        signature, reader = self.reader(ref)
        return self.cached(("index", ref.path, signature), reader.run_index)

    def rows(self, ref: store.StoreRef, run_ids: list[str]) -> dict[str, store.RunRow]:
        signature, reader = self.reader(ref)
        with self._lock:
            missing = [r for r in run_ids if ("row", ref.path, signature, r) not in self._cache]
            if missing:
                for row in reader.runs(missing):
                    self.cached(("row", ref.path, signature, row.run_id), lambda row=row: row)
            return {
                r: self._cache[("row", ref.path, signature, r)]
                for r in run_ids
                if ("row", ref.path, signature, r) in self._cache
            }

    def detail(self, key: str, run_id: str) -> store.RunDetail:
        ref = self.ref(key)
        signature, reader = self.reader(ref)
        detail = self.cached(("detail", ref.path, signature, run_id), lambda: reader.run(run_id))
        if detail is None:
            abort(404, f"no run {run_id!r} in store {key!r}")
        return detail

    def document(self, path: str, read: Callable[[str], Any]) -> Any:
        """``read(path)``, cached until the file's size or mtime changes."""
        try:
            stat = os.stat(path)
            signature = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            signature = None
        name = f"{read.__module__}.{read.__qualname__}"
        return self.cached(("document", name, path, signature), lambda: read(path))

    def scalars(self, log_dir: str) -> list[tensorboard.Series]:
        signature = tensorboard.signature(log_dir)
        return self.cached(
            ("scalars", log_dir, signature),
            lambda: tensorboard.read_scalars(log_dir, [s[0] for s in signature]),
        )


# --- formatting (Jinja filters) ----------------------------------------------------------


def _points(value: Any) -> str:
    if not isinstance(value, int | float) or value < 0:
        return "n/a"
    return f"{value * 100:.2f}"


def _delta(value: Any) -> str:
    return "" if not isinstance(value, int | float) else f"{value * 100:+.2f}"


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "n/a"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "n/a"


def _kb(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) else f"{value / 1024:.1f}"


def _task_label(task: Any) -> str:
    return TASK_LABELS.get(task, str(task or ""))


def _metric_label(metric: Any) -> str:
    return METRIC_LABELS.get(metric, str(metric or ""))


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- page data ---------------------------------------------------------------------------


def _run_ref(text: str) -> tuple[str, str]:
    key, sep, run_id = (text or "").partition("|")
    if not sep or not run_id:
        abort(400, f"a run is named 'store|run id', got {text!r}")
    return key, run_id


def _variant_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for entry in metrics.get("variants") or []:
        if not isinstance(entry, Mapping):
            continue
        values = entry.get("metrics") or {}
        latency = entry.get("latency") or {}
        rows.append(
            {
                "variant": entry.get("variant", "?"),
                "bytes": entry.get("bytes"),
                "latency": latency,
                "metrics": {k: values.get(k) for k in SUMMARY_KEYS},
                "delta_ap": (entry.get("delta_to_float") or {}).get("AP"),
                "images": entry.get("num_images"),
            }
        )
    return rows


def _metric_keys(metrics: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    """(summary metric keys, per-class key prefix) of a metrics.json's task."""
    if store.task_of(metrics) == store.CLASSIFICATION:
        return classification.SUMMARY_KEYS, classification.PER_CLASS_PREFIX
    return SUMMARY_KEYS, charts.PER_CLASS_PREFIX


def _metric_table(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """variant -> name -> value (metrics, per-class metric, size, latency) for the comparison."""
    out: dict[str, dict[str, Any]] = {}
    for entry in metrics.get("variants") or []:
        if not isinstance(entry, Mapping) or "variant" not in entry:
            continue
        values = dict(entry.get("metrics") or {})
        values["size KB"] = entry.get("bytes")
        values["latency ms"] = (entry.get("latency") or {}).get("median_ms")
        out[entry["variant"]] = values
    return out


def _metrics_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One row per metric, and per variant the values of A and B."""
    ta, tb = _metric_table(a), _metric_table(b)
    variants = list(dict.fromkeys([*ta, *tb]))
    (keys_a, prefix_a), (keys_b, prefix_b) = _metric_keys(a), _metric_keys(b)
    classes = sorted(
        {k for t in (ta, tb) for v in t.values() for k in v if k.startswith((prefix_a, prefix_b))}
    )
    rows = []
    for name in [*dict.fromkeys([*keys_a, *keys_b]), *classes, "size KB", "latency ms"]:
        cells = [
            {"variant": v, "a": ta.get(v, {}).get(name), "b": tb.get(v, {}).get(name)}
            for v in variants
        ]
        if any(c["a"] is not None or c["b"] is not None for c in cells):
            rows.append({"name": name, "cells": cells})
    return {"variants": variants, "rows": rows}


def evaluation_context(detail: store.RunDetail, matrix: str = "") -> dict[str, Any]:
    """What ``evaluation.html`` renders for a run, by the task of its metrics.json.

    ``matrix`` names the variant whose confusion matrix a classification page
    shows (default: the candidate).
    """
    metrics = detail.metrics
    failed = [e for e in detail.executions if e.state == "FAILED"]
    if store.task_of(metrics) == store.CLASSIFICATION:
        view = classification.view(metrics, matrix)
        figures = {}
        if view.rows:
            metric, label = classification.HEADLINE, _metric_label(classification.HEADLINE)
            figures = {
                "variants": charts.per_variant(metrics, metric, label),
                "size": charts.tradeoff(metrics, "size", metric, label),
                "latency": charts.tradeoff(metrics, "latency", metric, label),
                "classes": charts.per_class(
                    metrics, classification.PER_CLASS_PREFIX, "accuracy", view.classes
                ),
            }
        return {"d": detail, "rows": view.rows, "c": view, "figures": figures, "failed": failed}
    figures = {}
    if metrics.get("variants"):
        figures = {
            "size": charts.tradeoff(metrics, "size"),
            "latency": charts.tradeoff(metrics, "latency"),
            "classes": charts.per_class(metrics),
        }
    return {
        "d": detail,
        "rows": _variant_rows(metrics),
        "c": None,
        "figures": figures,
        "failed": failed,
        "summary_keys": SUMMARY_KEYS,
    }


def pr_context(curves: pr_curves.PRCurves, class_name: str = "") -> dict[str, Any]:
    """The precision-recall section of a detection evaluation page: one chart per IoU
    setting, one line per variant, over all classes or for ``class_name``."""
    if curves.error:
        return {"error": curves.error}
    if class_name not in curves.classes:
        class_name = pr_curves.ALL_CLASSES
    colours = gallery.colours(curves.variants)
    label = class_name or "all classes"
    figures = {
        key: charts.pr_curves(
            curves.recall, curves.curves(class_name, key), f"{text}: {label}", colours
        )
        for key, text in pr_curves.IOUS
    }
    undefined = not any(
        p is not None
        for key, _ in pr_curves.IOUS
        for c in curves.curves(class_name, key).values()
        for p in c
    )
    return {
        "error": "",
        "classes": curves.classes,
        "selected": class_name,
        "figures": figures,
        "undefined": undefined,
    }


def qat_note(detail: store.RunDetail) -> str:
    """Why the training page shows no QAT curves ("" when the QATTrainer left logs)."""
    qat = [
        e
        for e in detail.executions
        if e.component == QAT_COMPONENT or e.type_name.endswith("." + QAT_COMPONENT)
    ]
    if any(component in {e.component for e in qat} for component, _ in detail.log_dirs):
        return ""
    if not qat:
        return "No QAT training curves: this run has no QATTrainer (QAT was off)."
    if qat[-1].state == "FAILED":
        return "No QAT training curves: the QATTrainer of this run failed."
    if qat[-1].state in ("RUNNING", "NEW"):
        return "No QAT training curves yet: the QATTrainer of this run is running."
    return (
        "No QAT training curves in this run: its QATTrainer has no model_run output "
        "(trained before the QATTrainer wrote TensorBoard logs)."
    )


def _threshold(default: float) -> float:
    """The ``threshold`` query argument when it is a number in 0..1, else ``default``."""
    value = request.args.get("threshold", type=float)
    return value if value is not None and 0.0 <= value <= 1.0 else default


def _send_artifact_file(path: str, max_age: int | None = None) -> Response:
    """An artifact's file (the caller checked that it may be served): text as plain text,
    never allowed to run scripts."""
    text_like = path.endswith((".md", ".json", ".txt", ".yaml", ".yml", ".csv", ".log"))
    response = send_file(path, mimetype="text/plain" if text_like else None, max_age=max_age)
    # Files from artifacts may be HTML: shown, but never allowed to run scripts.
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


def _config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    missing = object()
    rows = []
    for key in sorted({*a, *b}):
        x, y = a.get(key, missing), b.get(key, missing)
        rows.append(
            {
                "key": key,
                "a": "(not set)" if x is missing else x,
                "b": "(not set)" if y is missing else y,
                "same": x == y,
            }
        )
    return rows


# --- the app -----------------------------------------------------------------------------


def create_app(
    root: str,
    *,
    per_page: int = 50,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
) -> Flask:
    """The dashboard over the ML Metadata stores under ``root`` (read-only).

    Args:
      root: folder of the pipeline root(s).
      per_page: runs per page of the runs list.
      host: the address the server binds; requests naming it are answered.
      allowed_hosts: more names (or addresses) the server is reached by; with
        :data:`LOCAL_HOSTS` and ``host`` the only ``Host`` headers answered.
    """
    app = Flask(__name__)
    allowed = frozenset(host_name(h) for h in (*LOCAL_HOSTS, host, *allowed_hosts)) - {""}
    state = DashboardState(root)
    app.extensions[EXTENSION] = state
    app.jinja_env.filters.update(
        points=_points,
        delta=_delta,
        duration=_duration,
        when=_when,
        kb=_kb,
        short=_short,
        task_label=_task_label,
        metric_label=_metric_label,
    )

    def link(path: str) -> str | None:
        rel = files.relative_to(state.root, path)
        return None if rel is None else url_for("browse", relative=rel)

    def thumbnail(detail: store.RunDetail, relative: str) -> str | None:
        if not relative:
            return None
        return url_for(
            "gallery_thumbnail", store=detail.row.store, run=detail.row.run_id, path=relative
        )

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {
            "root": state.root,
            "link": link,
            "relpath": lambda path: files.relative_to(state.root, path),
            "gallery_status": gallery.availability,
            "thumbnail": thumbnail,
        }

    @app.errorhandler(store.StoreError)
    def _store_error(exc: store.StoreError):
        return render_template(
            "message.html", title=f"Store {exc.kind}", message=str(exc), kind=exc.kind
        ), 503

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return render_template(
            "message.html", title=f"{exc.code} {exc.name}", message=exc.description, kind="http"
        ), exc.code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        app.logger.exception("dashboard error")
        return render_template(
            "message.html",
            title="Unexpected error",
            message=f"{type(exc).__name__}: {exc}",
            kind="error",
        ), 500

    @app.before_request
    def _check_host():
        # DNS rebinding guard: a page on evil.example resolved to 127.0.0.1 sends its own name.
        name = host_name(request.host)
        if name not in allowed:
            message = (
                f"host {name[:100] or request.host[:100]!r} is not allowed: this dashboard "
                "answers localhost, its --host and the names given with --allow-host\n"
            )
            return Response(message, status=400, mimetype="text/plain")
        return None

    @app.after_request
    def _timing(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.get("/")
    def runs():
        started = time.perf_counter()
        refs = state.stores()
        if not refs:
            return render_template(
                "message.html",
                title="No runs yet",
                kind="missing",
                message=f"No ML Metadata store ({store.STORE_FILE}) under {state.root} or its "
                "sub-folders. Run the pipeline (qatflow run) or point --root at a pipeline root.",
            )
        problems, index = [], []
        for ref in refs:
            try:
                index += [(when, ref, run_id, p) for when, run_id, p in state.index(ref)]
            except store.StoreError as exc:
                problems.append({"store": ref.key, "kind": exc.kind, "message": str(exc)})
        far = dt.datetime.min.replace(tzinfo=dt.UTC)
        index.sort(key=lambda item: (item[0] or far, item[1].key, item[2]), reverse=True)
        pages = max(1, -(-len(index) // per_page))
        page = min(max(request.args.get("page", 1, type=int), 1), pages)
        shown = index[(page - 1) * per_page : page * per_page]
        by_store: dict[str, list[str]] = {}
        for _, ref, run_id, _ in shown:
            by_store.setdefault(ref.key, []).append(run_id)
        rows_by: dict[tuple[str, str], store.RunRow] = {}
        for ref in refs:
            if ref.key in by_store:
                for run_id, row in state.rows(ref, by_store[ref.key]).items():
                    rows_by[(ref.key, run_id)] = row
        rows = [rows_by[(ref.key, r)] for _, ref, r, _ in shown if (ref.key, r) in rows_by]
        return render_template(
            "runs.html",
            rows=rows,
            problems=problems,
            total=len(index),
            page=page,
            pages=pages,
            stores=refs,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )

    @app.get("/run")
    def run():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        previous = _previous_run(state, detail.row)
        return render_template(
            "run.html",
            d=detail,
            dag=charts.dag(detail),
            previous=previous,
            resolved_config=_resolved_config(state.ref(detail.row.store), detail.row.run_id),
        )

    @app.get("/evaluation")
    def evaluation():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        context = evaluation_context(detail, request.args.get("matrix", ""))
        if context["rows"] and not context["c"]:
            path = os.path.join(detail.evaluation_uri, pr_curves.PR_CURVES_FILE)
            curves = state.document(path, pr_curves.read_pr_curves)
            context["pr"] = pr_context(curves, request.args.get("pr_class", ""))
        if context["rows"]:
            path = os.path.join(detail.evaluation_uri, layer_errors.LAYER_ERRORS_FILE)
            context["le"] = state.document(path, layer_errors.read_layer_errors)
            context["le_path"] = path
            context["float_layers"] = layer_errors.float_layers(detail.metrics)
        return render_template("evaluation.html", **context)

    @app.get("/gallery")
    def gallery_page():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        status = gallery.availability(detail)
        number = request.args.get("page", 1, type=int)
        if status.kind == "classification":
            found = state.document(status.path, gallery.read_predictions)
            variant = found.pick(
                request.args.get("variant", ""), str(detail.metrics.get("candidate") or "")
            )
            return render_template(
                "gallery_classification.html",
                d=detail,
                g=found,
                variant=variant,
                errors=found.errors(),
                page=gallery.paginate(found.misclassified(variant), number),
            )
        if status.kind == "detection":
            found = state.document(status.path, gallery.read_detections)
            page = gallery.paginate(found.images, number)
            return render_template(
                "gallery.html",
                d=detail,
                g=found,
                page=page,
                data=found.client_data(page.items),
                threshold=_threshold(found.diff_threshold),
                hidden=set(request.args.getlist("hide")),
            )
        return render_template("gallery.html", d=detail, g=None, status=status)

    @app.get("/gallery/image")
    def gallery_image():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        status = gallery.availability(detail)
        if status.kind != "detection":
            abort(404, status.message or "the full-size view shows detection galleries only")
        found = state.document(status.path, gallery.read_detections)
        image_id = request.args.get("image", type=int)
        position = found.position(image_id) if image_id is not None else None
        if position is None:
            abort(404, f"no image {request.args.get('image', '')!r} in {gallery.DETECTIONS_FILE}")
        image = found.images[position]
        return render_template(
            "gallery_image.html",
            d=detail,
            g=found,
            im=image,
            previous=found.images[position - 1] if position > 0 else None,
            next=found.images[position + 1] if position + 1 < len(found.images) else None,
            back_page=position // gallery.PAGE_SIZE + 1,
            data=found.client_data([image]),
            threshold=_threshold(found.diff_threshold),
            hidden=set(request.args.getlist("hide")),
        )

    @app.get("/gallery/thumbnail")
    def gallery_thumbnail():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        if not detail.evaluation_uri:
            abort(404, "this run has no evaluation")
        refused = "only images of the run's evaluation artifact, inside the root, are served"
        try:
            path = files.resolve(detail.evaluation_uri, request.args.get("path", ""))
        except files.OutsideRoot:
            abort(403, refused)
        pipeline_root = state.ref(detail.row.store).pipeline_root
        if not files.inside(path, state.root, pipeline_root):
            abort(403, refused)
        if not path.lower().endswith(gallery.IMAGE_SUFFIXES):
            abort(403, refused)
        if not os.path.isfile(path):
            abort(404, "no such thumbnail in this run's evaluation artifact")
        return _send_artifact_file(path, max_age=_THUMBNAIL_MAX_AGE)

    @app.get("/training")
    def training():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        return render_template("training.html", d=detail, qat_note=qat_note(detail))

    @app.get("/api/training")
    def training_data():
        detail = state.detail(request.args.get("store", ""), request.args.get("run", ""))
        curves = [(component, state.scalars(log_dir)) for component, log_dir in detail.log_dirs]
        return jsonify(
            {
                "logs": [
                    {"component": c, "dir": d, "files": len(tensorboard.event_files(d))}
                    for c, d in detail.log_dirs
                ],
                "series": sum(len(s) for _, s in curves),
                "charts": charts.training(curves),
            }
        )

    @app.get("/compare")
    def compare():
        a_key, a_run = _run_ref(request.args.get("a", ""))
        b_key, b_run = _run_ref(request.args.get("b", ""))
        a, b = state.detail(a_key, a_run), state.detail(b_key, b_run)
        config = _config_diff(a.config, b.config)
        metric = store.headline_metric(store.task_of(a.metrics or b.metrics))
        return render_template(
            "compare.html",
            a=a,
            b=b,
            config=config,
            changed=sum(not r["same"] for r in config),
            metrics=_metrics_diff(a.metrics, b.metrics),
            figure=charts.compare_metric(
                "A", a.metrics, "B", b.metrics, metric, _metric_label(metric)
            )
            if a.metrics or b.metrics
            else None,
        )

    @app.get("/files/", defaults={"relative": ""})
    @app.get("/files/<path:relative>")
    def browse(relative: str):
        try:
            path = files.resolve(state.root, relative)
        except files.OutsideRoot:
            abort(403, "only files inside the dashboard root are served")
        if os.path.isdir(path):
            entries = []
            for name in sorted(os.listdir(path)):
                full = os.path.join(path, name)
                is_dir = os.path.isdir(full)
                entries.append(
                    {
                        "name": name + ("/" if is_dir else ""),
                        "rel": os.path.relpath(full, os.path.realpath(state.root)),
                        "size": None if is_dir else os.path.getsize(full),
                    }
                )
            rel = os.path.relpath(path, os.path.realpath(state.root))
            return render_template("files.html", rel="" if rel == "." else rel, entries=entries)
        if not os.path.isfile(path):
            abort(404, f"no file {relative!r} under the dashboard root")
        return _send_artifact_file(path)

    @app.get("/vendor/plotly.min.js")
    def plotly_js():
        path = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
        return send_file(path, mimetype="text/javascript", max_age=86400)

    return app


def _resolved_config(ref: store.StoreRef, run_id: str) -> str:
    """``<pipeline root>/config.yaml`` when ``latest_run.json`` says it belongs to ``run_id``.

    ``qatflow run`` rewrites both files on every run, so older runs have only
    their exec properties.
    """
    root = ref.pipeline_root
    latest = read_latest_run(root)
    path = os.path.join(root, "config.yaml")
    if latest.get("run_id") == run_id and os.path.isfile(path):
        return path
    return ""


def _previous_run(state: DashboardState, row: store.RunRow) -> str | None:
    """The ref of the run of the same pipeline before ``row`` (for "compare with previous")."""
    ref = state.ref(row.store)
    index = state.index(ref)
    names = [run_id for _, run_id, pipeline in index if pipeline == row.pipeline]
    if row.run_id in names:
        position = names.index(row.run_id)
        if position + 1 < len(names):
            return f"{row.store}|{names[position + 1]}"
    return None
