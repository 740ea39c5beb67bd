"""The evaluation's contract: ``metrics.json``, built, written and read here only.

The Evaluator writes it into its ``ModelEvaluation`` folder; the Pusher ships
it beside the model; the run summary, ``qatflow evaluate-tflite`` and the
dashboard read it. Content::

    {"units": "...", "baseline": "keras_float", "candidate": "qat_int8",
     "variants": [{"variant", "file", "bytes", "latency", "num_images",
                   "num_detections", "metrics": {AP, AP50, ..., "AP_/<class>"},
                   "delta_to_float": {...}}, ...],
     "blessing": {"blessed", "candidate", "baseline", "metric", ...}}

Metrics are pycocotools fractions 0..1 (-1: undefined). No numpy here, so the
dashboard and the CLI read it without the evaluation machinery.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from model_maker.core.data import fileio

METRICS_FILE = "metrics.json"
#: The COCO summary metrics in pycocotools' ``stats`` order.
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100")
#: Prefix of the per-class AP keys (``"AP_/" + class name``), as in tflite-model-maker.
PER_CLASS_PREFIX = "AP_/"
UNITS = (
    "metrics and deltas are pycocotools fractions 0..1 (-1: undefined); "
    "bytes are file sizes; latency in milliseconds"
)


def metrics_document(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    candidate: str,
    blessing: Mapping[str, Any],
) -> dict[str, Any]:
    """The content of metrics.json."""
    return {
        "units": UNITS,
        "baseline": baseline,
        "candidate": candidate,
        "variants": [dict(e) for e in entries],
        "blessing": dict(blessing),
    }


def read_metrics(evaluation_dir: str) -> dict[str, Any]:
    """metrics.json of an evaluation folder ({} when missing or not a JSON object)."""
    path = fileio.join(evaluation_dir, METRICS_FILE)
    try:
        doc = json.loads(fileio.read_text(path))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def variant_metrics(document: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The ``metrics`` of ``variant`` in a document ({} when absent)."""
    for entry in document.get("variants") or []:
        if isinstance(entry, Mapping) and entry.get("variant") == variant:
            return dict(entry.get("metrics") or {})
    return {}


def candidate_metric(document: Mapping[str, Any], metric: str = "AP") -> tuple[str, float | None]:
    """(candidate variant, its ``metric``) from a document."""
    candidate = str(document.get("candidate") or "")
    value = variant_metrics(document, candidate).get(metric)
    return candidate, float(value) if isinstance(value, int | float) else None
