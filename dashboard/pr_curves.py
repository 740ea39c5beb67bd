"""Precision-recall curves of a detection evaluation, from the Evaluator's pr_curves.json.

Contract 18: ``{"recall": [101 COCO recall points], "variants": {variant: {"all":
{"iou50": [...], "mean": [...]}, "per_class": {class: {"iou50": [...], "mean":
[...]}}}}}``: precision at each recall point, from pycocotools' accumulated
``precision`` (area all, 100 detections); ``mean`` averages IoU .50:.95; null where
pycocotools has no value (-1 is read as null too). A curve whose length differs
from ``recall`` is left out; the rest of the document still shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboard import files

PR_CURVES_FILE = "pr_curves.json"
#: (key, label) of the IoU settings of every curve.
IOUS = (("iou50", "IoU 0.50"), ("mean", "mean IoU .50:.95"))
#: The class selector's value for the curves over all classes.
ALL_CLASSES = ""

Curve = list[float | None]


@dataclass(frozen=True)
class PRCurves:
    """pr_curves.json, checked.

    Attributes:
      recall: the recall points (x of every curve).
      overall: variant -> IoU key -> precision over all classes.
      per_class: variant -> class -> IoU key -> precision.
      classes: class names with curves, in the document's order.
      error: why there are no curves ("" when the document was read).
    """

    recall: list[float] = field(default_factory=list)
    overall: dict[str, dict[str, Curve]] = field(default_factory=dict)
    per_class: dict[str, dict[str, dict[str, Curve]]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys([*self.overall, *self.per_class]))

    def curves(self, class_name: str, iou: str) -> dict[str, Curve]:
        """variant -> precision curve of ``class_name`` (ALL_CLASSES: over all classes)."""
        out = {}
        for variant in self.variants:
            if class_name == ALL_CLASSES:
                curve = self.overall.get(variant, {}).get(iou)
            else:
                curve = self.per_class.get(variant, {}).get(class_name, {}).get(iou)
            if curve is not None:
                out[variant] = curve
        return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _curve(raw: Any, points: int) -> Curve | None:
    if not isinstance(raw, list) or len(raw) != points:
        return None
    out: Curve = []
    for value in raw:
        number = _number(value)
        out.append(None if number is None or number < 0 else number)
    return out


def _curves(raw: Any, points: int) -> dict[str, Curve]:
    raw = raw if isinstance(raw, Mapping) else {}
    out = {key: _curve(raw.get(key), points) for key, _ in IOUS}
    return {k: v for k, v in out.items() if v is not None}


def read_pr_curves(path: str) -> PRCurves:
    """pr_curves.json at ``path``; curves with ``error`` set when it cannot be used."""
    document, error = files.read_json(path)
    if error:
        if not os.path.exists(path):
            error = (
                "no precision-recall curves in this run "
                f"(evaluated before the Evaluator wrote {PR_CURVES_FILE})"
            )
        return PRCurves(error=error)
    if not isinstance(document, Mapping) or not isinstance(document.get("variants"), Mapping):
        return PRCurves(error=f"{PR_CURVES_FILE} has no variants")
    recall = [_number(r) for r in document.get("recall") or []]
    if not recall or any(r is None for r in recall):
        return PRCurves(error=f"{PR_CURVES_FILE} has no list of recall points")
    overall, per_class, classes = {}, {}, {}
    for variant, entry in document["variants"].items():
        if not isinstance(entry, Mapping):
            continue
        overall[str(variant)] = _curves(entry.get("all"), len(recall))
        by_class = entry.get("per_class")
        by_class = by_class if isinstance(by_class, Mapping) else {}
        per_class[str(variant)] = {str(c): _curves(v, len(recall)) for c, v in by_class.items()}
        classes.update(dict.fromkeys(str(c) for c in by_class))
    return PRCurves(
        recall=[float(r) for r in recall if r is not None],
        overall=overall,
        per_class=per_class,
        classes=list(classes),
    )
