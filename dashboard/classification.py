"""What the evaluation page shows of an image classification run, from its metrics.json.

The classification Evaluator writes (besides ``units``, ``baseline``,
``candidate`` and ``blessing``, as for detection)::

    {"task": "image_classification", "classes": ["ants", "bees"],
     "variants": [{"variant", "file", "bytes", "latency", "num_images",
                   "metrics": {"top1", "top5" (>= 5 classes), "macro_f1", "acc_/<class>"},
                   "confusion_matrix": [[...]]  (rows = true class, columns = predicted,
                                                 in the order of "classes"),
                   "delta_to_float": {"top1", ...}}, ...]}

Metrics are fractions 0..1, shown as points (x100) by the templates. Nothing
here trusts the document: a missing key gives "n/a", a malformed confusion
matrix gives a message instead of a table. Class names are user data; the
templates escape them (Jinja autoescape), :mod:`dashboard.charts` escapes them
for plotly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Summary metrics of a classification evaluation, in table order, with their labels.
SUMMARY = (("top1", "top-1"), ("top5", "top-5"), ("macro_f1", "macro-F1"))
SUMMARY_KEYS = tuple(key for key, _ in SUMMARY)
#: Prefix of the per-class accuracy keys (``"acc_/" + class name``).
PER_CLASS_PREFIX = "acc_/"
HEADLINE = "top1"
#: Heat-map colour of the confusion matrix (row share 1.0), as r, g, b.
_HEAT_RGB = (21, 101, 192)
#: Above this share the cell text turns white, for contrast.
_DARK_SHARE = 0.55


@dataclass(frozen=True)
class ConfusionCell:
    """One cell: ``count`` images of class ``true`` predicted as ``predicted``.

    Attributes:
      true: row index (true class).
      predicted: column index (predicted class).
      count: images.
      share: ``count`` over the row's images (0 for an empty row).
    """

    true: int
    predicted: int
    count: int
    share: float

    @property
    def diagonal(self) -> bool:
        return self.true == self.predicted

    @property
    def style(self) -> str:
        """Inline CSS of the heat map (only numbers go into it)."""
        r, g, b = _HEAT_RGB
        text = "#fff" if self.share > _DARK_SHARE else "#1f2933"
        return f"background-color: rgba({r}, {g}, {b}, {0.9 * self.share:.3f}); color: {text}"


@dataclass(frozen=True)
class ConfusionMatrix:
    """The confusion matrix of one variant.

    Attributes:
      variant: variant name.
      classes: class names, rows and columns in this order.
      rows: ``rows[i][j]``: true class i predicted as j.
      totals: images per true class (row sums).
      error: why there is no table ("" when the matrix is well formed).
    """

    variant: str
    classes: list[str]
    rows: list[list[ConfusionCell]] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def images(self) -> int:
        return sum(self.totals)

    @property
    def correct(self) -> int:
        return sum(row[i].count for i, row in enumerate(self.rows))

    @property
    def predicted_totals(self) -> list[int]:
        """Images predicted as each class (column sums)."""
        return [sum(row[j].count for row in self.rows) for j in range(len(self.rows))]


@dataclass(frozen=True)
class ClassificationView:
    """Everything the classification part of the evaluation page shows.

    Attributes:
      classes: class names in the document's order.
      summary: (metric key, label) of the table's metric columns: top-1, top-5
        when some variant has it, macro-F1 when some variant has it.
      rows: one dict per variant: variant, bytes, latency, metrics, delta_top1, images.
      per_class: one dict per class: name, by_variant (one value per variant, in
        ``variants`` order), delta (candidate minus baseline), images.
      variants: variant names, in the document's order.
      matrices: variant -> its confusion matrix (variants without one are absent).
      selected: the variant whose matrix is shown.
    """

    classes: list[str]
    summary: list[tuple[str, str]]
    rows: list[dict[str, Any]]
    per_class: list[dict[str, Any]]
    variants: list[str]
    matrices: dict[str, ConfusionMatrix]
    selected: str

    @property
    def matrix(self) -> ConfusionMatrix | None:
        return self.matrices.get(self.selected)


def _entries(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [v for v in metrics.get("variants") or [] if isinstance(v, Mapping) and "variant" in v]


def _number(value: Any) -> float | None:
    """A finite JSON number as a float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def class_names(metrics: Mapping[str, Any]) -> list[str]:
    """The document's ``classes``; else the ``acc_/`` keys of its first variant; else
    ``class 0``.. as many as the first confusion matrix has rows."""
    classes = metrics.get("classes")
    if isinstance(classes, list) and classes:
        return [str(c) for c in classes]
    entries = _entries(metrics)
    for entry in entries:
        keys = [k for k in entry.get("metrics") or {} if str(k).startswith(PER_CLASS_PREFIX)]
        if keys:
            return [k[len(PER_CLASS_PREFIX) :] for k in keys]
    for entry in entries:
        matrix = entry.get("confusion_matrix")
        if isinstance(matrix, list) and matrix:
            return [f"class {i}" for i in range(len(matrix))]
    return []


def confusion_matrix(variant: str, matrix: Any, classes: Sequence[str]) -> ConfusionMatrix:
    """The heat-map cells of ``matrix`` (rows = true class), or an ``error`` saying why not."""
    size = len(classes)
    if not isinstance(matrix, list) or not matrix:
        return ConfusionMatrix(variant, list(classes), error="no confusion matrix")
    if len(matrix) != size or any(not isinstance(r, list) or len(r) != size for r in matrix):
        shape = f"{len(matrix)} rows" if isinstance(matrix, list) else type(matrix).__name__
        return ConfusionMatrix(
            variant,
            list(classes),
            error=f"the confusion matrix is not {size} x {size} (one row and column per class), "
            f"got {shape}",
        )
    counts = [[_number(c) for c in row] for row in matrix]
    if any(c is None or c < 0 or c != int(c) for row in counts for c in row):
        return ConfusionMatrix(
            variant, list(classes), error="the confusion matrix holds values that are not counts"
        )
    totals = [int(sum(row)) for row in counts]
    rows = [
        [
            ConfusionCell(i, j, int(c), c / totals[i] if totals[i] else 0.0)
            for j, c in enumerate(row)
        ]
        for i, row in enumerate(counts)
    ]
    return ConfusionMatrix(variant, list(classes), rows=rows, totals=totals)


def view(metrics: Mapping[str, Any], selected: str = "") -> ClassificationView:
    """The page's data from a classification metrics.json; ``selected`` names the variant
    whose confusion matrix is shown (default: the candidate, else the first with one)."""
    entries = _entries(metrics)
    classes = class_names(metrics)
    summary = [
        (key, label)
        for key, label in SUMMARY
        if key == HEADLINE or any(key in (e.get("metrics") or {}) for e in entries)
    ]
    rows = []
    for entry in entries:
        values = entry.get("metrics") or {}
        rows.append(
            {
                "variant": str(entry["variant"]),
                "bytes": entry.get("bytes"),
                "latency": entry.get("latency") or {},
                "metrics": {key: values.get(key) for key, _ in summary},
                "delta_top1": (entry.get("delta_to_float") or {}).get(HEADLINE),
                "images": entry.get("num_images"),
            }
        )
    variants = [r["variant"] for r in rows]
    matrices = {
        str(e["variant"]): confusion_matrix(str(e["variant"]), e.get("confusion_matrix"), classes)
        for e in entries
        if e.get("confusion_matrix") is not None
    }
    by_variant = {str(e["variant"]): e.get("metrics") or {} for e in entries}
    candidate = by_variant.get(str(metrics.get("candidate") or ""), {})
    baseline = by_variant.get(str(metrics.get("baseline") or ""), {})
    reference = next((m for m in matrices.values() if not m.error), None)
    per_class = []
    for index, name in enumerate(classes):
        key = PER_CLASS_PREFIX + name
        cand, base = _number(candidate.get(key)), _number(baseline.get(key))
        per_class.append(
            {
                "name": name,
                "by_variant": [by_variant[v].get(key) for v in variants],
                "delta": cand - base if cand is not None and base is not None else None,
                "images": reference.totals[index] if reference is not None else None,
            }
        )
    if selected not in matrices:
        candidate_name = str(metrics.get("candidate") or "")
        selected = candidate_name if candidate_name in matrices else next(iter(matrices), "")
    return ClassificationView(
        classes=classes,
        summary=summary,
        rows=rows,
        per_class=per_class,
        variants=variants,
        matrices=matrices,
        selected=selected,
    )
