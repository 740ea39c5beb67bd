"""Plotly figures of the dashboard, as plain dicts for ``Plotly.newPlot`` in the browser.

Every function returns ``{"data": [...], "layout": {...}}`` (plotly's figure
JSON) built with ``plotly.graph_objects``; the templates hand it to plotly.js,
which the app serves from the plotly package. Metric values arrive as
fractions (0..1: pycocotools AP, top-1...) and are shown as points (x100); -1
(undefined) is left out. Class names are user data: plotly.js reads a few HTML
tags in labels, so they go in HTML-escaped (plotly shows the entities as text).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from dashboard.store import RunDetail, levels
from dashboard.tensorboard import Series

STATE_COLOURS = {
    "COMPLETE": "#2e7d32",
    "CACHED": "#1565c0",
    "FAILED": "#c62828",
    "RUNNING": "#ef6c00",
    "NEW": "#9e9e9e",
    "CANCELED": "#6d4c41",
    "UNKNOWN": "#9e9e9e",
}
PER_CLASS_PREFIX = "AP_/"
#: Column titles of the training charts, by component id (others: the id).
COMPONENT_LABELS = {"Trainer": "float (Trainer)", "QATTrainer": "QAT (QATTrainer)"}
#: Line colours of the training charts, one per split and tag, the same in every column.
_LINE_COLOURS = ("#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#5d4037")
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}


def _figure(fig: Any) -> dict[str, Any]:
    # plotly's encoder turns numpy values and the like into JSON; the dict goes to |tojson.
    return json.loads(fig.to_json())


def _label(text: str) -> str:
    """A user-supplied label (class name) as plotly shows it literally."""
    return html.escape(str(text), quote=False)


def _points(value: Any) -> float | None:
    if not isinstance(value, int | float) or value < 0:
        return None
    return round(float(value) * 100.0, 3)


def dag(detail: RunDetail) -> dict[str, Any]:
    """The component DAG: one marker per execution (colour = state), arrows for lineage."""
    depth = levels(detail)
    rows: dict[int, int] = {}
    position: dict[str, tuple[float, float]] = {}
    for execution in detail.executions:
        level = depth[execution.component]
        row = rows.get(level, 0)
        rows[level] = row + 1
        # Odd levels sit a little lower, so that edges skipping a level stay visible.
        position[execution.component] = (float(level), -float(row) - 0.3 * (level % 2))
    fig = go.Figure()
    annotations = [
        {
            "x": position[dst][0],
            "y": position[dst][1],
            "ax": position[src][0],
            "ay": position[src][1],
            "xref": "x",
            "yref": "y",
            "axref": "x",
            "ayref": "y",
            "showarrow": True,
            "arrowhead": 2,
            "arrowsize": 1.2,
            "arrowwidth": 1.4,
            "arrowcolor": "#90a4ae",
            "standoff": 14,
            "startstandoff": 14,
            "text": "",
        }  # fmt: skip
        for src, dst in detail.edges
        if src in position and dst in position
    ]
    for state in dict.fromkeys(e.state for e in detail.executions):
        members = [e for e in detail.executions if e.state == state]
        fig.add_trace(
            go.Scatter(
                x=[position[e.component][0] for e in members],
                y=[position[e.component][1] for e in members],
                mode="markers+text",
                marker={
                    "size": 26,
                    "color": STATE_COLOURS.get(state, "#9e9e9e"),
                    "line": {"width": 1, "color": "#263238"},
                },  # fmt: skip
                text=[e.component for e in members],
                textposition="bottom center",
                customdata=[
                    f"{e.state}, {'n/a' if e.duration_s is None else f'{e.duration_s:.1f} s'}"
                    for e in members
                ],
                hovertemplate="%{text}: %{customdata}<extra></extra>",
                name=state.lower(),
            )
        )
    lowest = min((p[1] for p in position.values()), default=0.0)
    fig.update_layout(
        **_LAYOUT,
        title="Component DAG (colour: execution state)",
        height=240 + 90 * int(-lowest),
        annotations=annotations,
        showlegend=True,
        xaxis={"visible": False, "range": [-0.5, max(depth.values(), default=0) + 0.5]},
        yaxis={"visible": False, "range": [lowest - 0.5, 0.3]},
    )
    return _figure(fig)


def _variants(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in metrics.get("variants") or [] if isinstance(v, Mapping) and "variant" in v]


def tradeoff(
    metrics: Mapping[str, Any], x: str, metric: str = "AP", label: str = "AP"
) -> dict[str, Any]:
    """``metric`` (points) against model size (``x="size"``, MB) or median latency
    (``x="latency"``, ms); ``label`` names the metric in the title, axis and hover text."""
    xs, ys, names = [], [], []
    for entry in _variants(metrics):
        ap = _points((entry.get("metrics") or {}).get(metric))
        if x == "size":
            value = entry.get("bytes")
            value = None if value is None else value / 1e6
        else:
            value = (entry.get("latency") or {}).get("median_ms")
        if ap is None or value is None:
            continue
        xs.append(round(float(value), 3))
        ys.append(ap)
        names.append(entry["variant"])
    candidate = metrics.get("candidate")
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            text=names,
            mode="markers+text",
            textposition="top center",
            marker={
                "size": [18 if n == candidate else 12 for n in names],
                "color": ["#c62828" if n == candidate else "#1565c0" for n in names],
            },
            hovertemplate=f"%{{text}}: {label} %{{y:.2f}}, %{{x}}<extra></extra>",
        )  # fmt: skip
    )
    axis = "model size (MB)" if x == "size" else "median latency (ms, 1 thread)"
    fig.update_layout(
        **_LAYOUT,
        title=f"{label} vs {'model size' if x == 'size' else 'latency'}",
        xaxis_title=axis,
        yaxis_title=f"{label} (points)",
        height=360,
    )
    return _figure(fig)


def per_class(
    metrics: Mapping[str, Any],
    prefix: str = PER_CLASS_PREFIX,
    label: str = "AP",
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``prefix + class`` metrics (AP, accuracy), one bar group per class and one bar per variant.

    ``classes`` gives the order (metrics.json's ``classes``); by default the
    classes found in the metrics, sorted.
    """
    variants = _variants(metrics)
    if classes is None:
        found = {k for v in variants for k in (v.get("metrics") or {}) if k.startswith(prefix)}
        classes = sorted(k[len(prefix) :] for k in found)
    fig = go.Figure(
        [
            go.Bar(
                name=v["variant"],
                x=[_label(c) for c in classes],
                y=[_points((v.get("metrics") or {}).get(prefix + c)) for c in classes],
            )
            for v in variants
        ]
    )
    fig.update_layout(
        **_LAYOUT,
        title=f"{label} per class",
        barmode="group",
        yaxis_title=f"{label} (points)",
        height=360,
    )
    return _figure(fig)


def per_variant(metrics: Mapping[str, Any], metric: str, label: str) -> dict[str, Any]:
    """``metric`` (points) of every variant as bars; the candidate in red, the
    blessing threshold (when the blessing compares ``metric``) as a dashed line."""
    names, ys = [], []
    for entry in _variants(metrics):
        value = _points((entry.get("metrics") or {}).get(metric))
        if value is not None:
            names.append(entry["variant"])
            ys.append(value)
    candidate = metrics.get("candidate")
    fig = go.Figure(
        go.Bar(
            x=names,
            y=ys,
            text=[f"{y:.2f}" for y in ys],
            textposition="outside",
            marker={"color": ["#c62828" if n == candidate else "#1565c0" for n in names]},
            hovertemplate=f"%{{x}}: {label} %{{y:.2f}}<extra></extra>",
        )
    )
    blessing = metrics.get("blessing") or {}
    threshold = _points(blessing.get("threshold")) if blessing.get("metric") == metric else None
    title = f"{label} per variant"
    if threshold is not None:
        fig.add_hline(y=threshold, line={"dash": "dash", "color": "#ef6c00"})
        title += f" (dashed: blessing threshold {threshold:.2f})"
    low = min([*ys, threshold] if threshold is not None else ys, default=0.0)
    fig.update_layout(
        **_LAYOUT,
        title=title,
        yaxis_title=f"{label} (points)",
        yaxis_range=[max(0.0, low - 10.0), 100.0 + 5.0],
        height=360,
    )
    return _figure(fig)


def _group(series: Series) -> str:
    name = series.name.lower()
    if "loss" in name:
        return "loss"
    if name in ("lr", "learning_rate") or "learning_rate" in name:
        return "learning rate"
    if name.startswith(("ap", "ar")):
        return "AP"
    return "other"


def training(curves: Sequence[tuple[str, Sequence[Series]]]) -> list[dict[str, Any]]:
    """Loss, learning rate, AP (and other) charts; one line per split and tag.

    With logs of several components (the Trainer's float training and the
    QATTrainer's fine-tuning), each chart has one column per component, side by side
    with a shared y axis; a split and tag has the same colour in every column.
    ``components`` of each chart lists its columns.
    """
    groups: dict[str, list[tuple[str, Series]]] = {}
    for component, series_list in curves:
        for series in series_list:
            groups.setdefault(_group(series), []).append((component, series))
    out = []
    for title in ("loss", "learning rate", "AP", "other"):
        members = groups.get(title)
        if not members:
            continue
        columns = list(dict.fromkeys(c for c, _ in members))
        fig = _columns_figure(title, members, columns)
        fig.update_layout(
            **_LAYOUT,
            title=title,
            yaxis_title="points" if title == "AP" else title,  # the first column's axis
            height=320 if len(columns) == 1 else 340,
            showlegend=True,
        )
        if len(columns) > 1:
            fig.update_layout(margin={**_LAYOUT["margin"], "t": 80})
        fig.update_xaxes(title_text="epoch")
        if title == "learning rate" and _spans_decades(members):
            fig.update_yaxes(type="log")
        out.append({"title": title, "components": columns, "figure": _figure(fig)})
    return out


def _columns_figure(
    title: str, members: Sequence[tuple[str, Series]], columns: Sequence[str]
) -> Any:
    if len(columns) == 1:
        fig = go.Figure()
    else:
        from plotly.subplots import make_subplots  # deferred: only runs with several trainers

        fig = make_subplots(
            rows=1,
            cols=len(columns),
            shared_yaxes=True,
            horizontal_spacing=0.04,
            subplot_titles=[_label(COMPONENT_LABELS.get(c, c)) for c in columns],
        )
    lines = list(dict.fromkeys((s.split, s.name) for _, s in members))
    shown: set[tuple[str, str]] = set()
    for component, s in members:
        key = (s.split, s.name)
        line = lines.index(key)
        trace = go.Scatter(
            x=s.steps,
            y=[v * 100 for v in s.values] if title == "AP" else s.values,
            mode="lines+markers",
            name=" ".join(p for p in key if p),
            legendgroup=f"line{line}",
            showlegend=key not in shown,  # one legend entry per line, for every column
            line={"color": _LINE_COLOURS[line % len(_LINE_COLOURS)]},
        )
        shown.add(key)
        if len(columns) == 1:
            fig.add_trace(trace)
        else:
            fig.add_trace(trace, row=1, col=columns.index(component) + 1)
    return fig


def _spans_decades(members: Sequence[tuple[str, Series]]) -> bool:
    values = [v for _, s in members for v in s.values if v > 0]
    return bool(values) and max(values) / min(values) > 100


def compare_metric(
    a_label: str,
    a: Mapping[str, Any],
    b_label: str,
    b: Mapping[str, Any],
    metric: str = "AP",
    label: str = "AP",
) -> dict:
    """``metric`` of every variant of two runs, side by side."""
    names = list(dict.fromkeys(v["variant"] for m in (a, b) for v in _variants(m)))

    def values(metrics: Mapping[str, Any]) -> list[float | None]:
        by = {v["variant"]: v for v in _variants(metrics)}
        return [_points((by.get(n, {}).get("metrics") or {}).get(metric)) for n in names]

    fig = go.Figure(
        [go.Bar(name=a_label, x=names, y=values(a)), go.Bar(name=b_label, x=names, y=values(b))]
    )
    fig.update_layout(
        **_LAYOUT,
        title=f"{label} per variant",
        barmode="group",
        yaxis_title=f"{label} (points)",
        height=340,
    )
    return _figure(fig)


def pr_curves(
    recall: Sequence[float],
    curves: Mapping[str, Sequence[float | None]],
    title: str,
    colours: Mapping[str, str],
) -> dict[str, Any]:
    """Precision against recall, one line per variant (gaps where precision is undefined)."""
    fig = go.Figure(
        [
            go.Scatter(
                x=list(recall),
                y=list(curve),
                mode="lines",
                name=_label(variant),
                line={"color": colours.get(variant), "width": 2},
                hovertemplate="recall %{x:.2f}: precision %{y:.3f}",
            )
            for variant, curve in curves.items()
        ]
    )
    fig.update_layout(
        **_LAYOUT,
        title=_label(title),
        xaxis={"title": "recall", "range": [0, 1]},
        yaxis={"title": "precision", "range": [0, 1.02]},
        height=380,
        showlegend=True,
    )
    return _figure(fig)
