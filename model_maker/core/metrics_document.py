"""The evaluation's contract: ``metrics.json``, built, written and read here only.

The Evaluator writes it into its ``ModelEvaluation`` folder; the Pusher ships
it beside the model; the run summary, ``qatflow evaluate-tflite`` and the
dashboard read it. Content::

    {"units": "...", "task": "object_detection", "baseline": "keras_float",
     "candidate": "qat_int8",
     "variants": [{"variant", "file", "bytes", "latency", "num_images",
                   "num_detections", "metrics": {AP, AP50, ..., "AP_/<class>"},
                   "delta_to_float": {...}}, ...],
     "blessing": {"blessed", "candidate", "baseline", "metric", ...},
     "layer_errors": {"file", "variant", "samples", "rank_metric", "num_layers",
                      "worst": [10 rows of layer_errors.json]},   (when measured)
     "qat_decision": {what qat.mode auto decided, qat_decision.json}}  (auto only)

A ``ptq_mixed`` variant also carries ``float_layers`` and ``float_layer_rule``
(:mod:`model_maker.core.quantization_report`).

Detection metrics are pycocotools fractions 0..1 (-1: undefined). A
document without ``task`` is a detector's. Image classification
(``"task": "image_classification"``) adds ``"classes": [names in model
order]``; each variant's ``metrics`` hold ``top1``, ``top5`` (5 classes or
more), ``macro_f1`` and ``acc_/<class>`` (accuracy = recall of the class,
absent for a class without eval images), fractions 0..1, and the variant
carries ``confusion_matrix`` (rows = true class, columns = predicted, in
``classes`` order) and ``num_images``. No numpy here, so the dashboard and
the CLI read it without the evaluation machinery.
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
#: The classification summary metrics, in report order.
CLASSIFICATION_KEYS = ("top1", "top5", "macro_f1")
#: Prefix of the per-class accuracy keys of classification (``"acc_/" + class name``).
PER_CLASS_ACCURACY_PREFIX = "acc_/"
OBJECT_DETECTION = "object_detection"
IMAGE_CLASSIFICATION = "image_classification"
UNITS = (
    "metrics and deltas are pycocotools fractions 0..1 (-1: undefined); "
    "bytes are file sizes; latency in milliseconds"
)
CLASSIFICATION_UNITS = (
    "metrics and deltas are fractions 0..1 (top1, top5, macro_f1, per-class accuracy); "
    "confusion_matrix rows = true class, columns = predicted; bytes are file sizes; "
    "latency in milliseconds"
)


def metrics_document(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    candidate: str,
    blessing: Mapping[str, Any],
    *,
    task: str = OBJECT_DETECTION,
    classes: Sequence[str] = (),
) -> dict[str, Any]:
    """The content of metrics.json (``classes``: classification only, model order)."""
    extra: dict[str, Any] = {}
    if task == IMAGE_CLASSIFICATION:
        extra["classes"] = list(classes)
    return {
        "units": CLASSIFICATION_UNITS if task == IMAGE_CLASSIFICATION else UNITS,
        "task": task,
        **extra,
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


def document_task(document: Mapping[str, Any]) -> str:
    """The task of a metrics document (``object_detection`` when it has no ``task``)."""
    return str(document.get("task") or OBJECT_DETECTION)


def headline_metric(document: Mapping[str, Any]) -> str:
    """The metric a run is summed up by: ``top1`` for classification, ``AP`` for detection."""
    return "top1" if document_task(document) == IMAGE_CLASSIFICATION else "AP"
