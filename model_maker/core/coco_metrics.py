"""COCO box metrics and precision/recall curves computed by pycocotools.

:func:`evaluate_coco` runs ``pycocotools.cocoeval.COCOeval`` once on COCO
ground truth and a list of COCO detection dicts and keeps what it found: the
AP family that tflite-model-maker's ``evaluate`` returns (``stats`` for the
summary, the accumulated ``precision`` array for the per-class AP) and that
``precision`` array itself, from which :func:`pr_curves` reads the
precision/recall curves. :func:`coco_metrics` is the metrics alone. Nothing
here re-implements AP: every number is pycocotools'.

Values are fractions in 0..1 exactly as pycocotools gives them (not
percentages). A metric of -1.0 means "undefined": pycocotools' convention when
the ground truth holds no box for that area range or class; in the curves an
undefined point is None (JSON null). Empty detections are valid input and give
0.0 for every defined metric.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_maker.core.data import fileio
from model_maker.core.metrics_document import PER_CLASS_PREFIX, SUMMARY_KEYS  # noqa: F401 - API

LOG = logging.getLogger("qatflow")

#: The file of the curves in the evaluation folder (:func:`pr_curves_document`).
PR_CURVES_FILE = "pr_curves.json"
#: Decimals of the precision values in the curves: within 5e-7 of pycocotools'.
CURVE_DECIMALS = 6
#: Curve names: precision at IoU 0.5, and the mean over the IoU thresholds .50:.95.
IOU50, IOU_MEAN = "iou50", "mean"


def _load_ground_truth(ground_truth: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(ground_truth, Mapping):
        data = copy.deepcopy(dict(ground_truth))
    else:
        data = json.loads(fileio.read_text(os.fspath(ground_truth)))  # local path or URI
    data.setdefault("info", {})
    data.setdefault("categories", [])
    data.setdefault("images", [])
    data.setdefault("annotations", [])
    for index, ann in enumerate(data["annotations"], start=1):
        # COCOeval reads these keys; COCO files written by other tools may omit them.
        ann.setdefault("id", index)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return data


def _coco_from_dict(data: dict[str, Any]):
    # deferred: pycocotools loads only where COCO metrics are computed
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _result_annotations(
    detections: Sequence[Mapping[str, Any]], known_images: set[Any]
) -> list[dict[str, Any]]:
    """COCO result dicts as the annotations of a COCO object (ids, areas, iscrowd added).

    Raises:
      ValueError: a detection of an image the ground truth does not list.
    """
    dets: list[dict[str, Any]] = []
    for det in detections:
        if det["image_id"] not in known_images:
            raise ValueError(f"detection for image_id {det['image_id']!r} not in the ground truth")
        x, y, w, h = (float(v) for v in det["bbox"])
        dets.append(
            {
                "image_id": det["image_id"],
                "category_id": int(det["category_id"]),
                "bbox": [x, y, w, h],
                "score": float(det["score"]),
                "area": w * h,
                "iscrowd": 0,
                "id": len(dets) + 1,
            }
        )
    return dets


@dataclass(frozen=True)
class CocoEvaluation:
    """One COCOeval run: the metrics and the accumulated precision they came from.

    Attributes:
      metrics: ``{"AP", ..., "ARmax100", "AP_/<name>"}`` (see :func:`coco_metrics`).
      precision: pycocotools' ``eval["precision"]`` ``[T, R, K, A, M]`` (IoU
        thresholds, recall points, categories, area ranges, max dets); -1 where
        undefined.
      category_ids: the category id of each K index (``params.catIds``).
      iou_thresholds: the T IoU thresholds (0.50, 0.55, ..., 0.95).
      recall_points: the R recall points (0.00, 0.01, ..., 1.00).
      label_names: category id -> name of the per-class entries.
    """

    metrics: dict[str, float]
    precision: np.ndarray
    category_ids: tuple[int, ...]
    iou_thresholds: tuple[float, ...]
    recall_points: tuple[float, ...]
    label_names: dict[int, str]


def evaluate_coco(
    ground_truth: Mapping[str, Any] | str | os.PathLike,
    detections: Sequence[Mapping[str, Any]],
    label_names: Mapping[int, str] | None = None,
) -> CocoEvaluation:
    """Run COCOeval (bbox) once: the metrics and the precision array of the curves.

    Args:
      ground_truth: COCO instances dict, or the path of a COCO JSON file.
      detections: COCO result dicts with ``image_id``, ``category_id``,
        ``bbox`` ``[x, y, width, height]`` in pixels of the original image and
        ``score``. May be empty.
      label_names: category id -> name for the ``AP_/<name>`` keys and the
        per-class curves; defaults to the names of the ground truth's ``categories``.

    Raises:
      ValueError: a detection of an image the ground truth does not list.
      OSError: the ground truth file cannot be read.
    """
    # deferred: pycocotools loads only where COCO metrics are computed
    from pycocotools.cocoeval import COCOeval

    gt_data = _load_ground_truth(ground_truth)
    if label_names is None:
        label_names = {int(c["id"]): str(c["name"]) for c in gt_data["categories"]}
    known_images = {img["id"] for img in gt_data["images"]}
    dt_data = {
        "info": gt_data["info"],
        "images": list(gt_data["images"]),
        "categories": copy.deepcopy(gt_data["categories"]),
        "annotations": _result_annotations(detections, known_images),
    }
    evaluator = COCOeval(_coco_from_dict(gt_data), _coco_from_dict(dt_data), iouType="bbox")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    LOG.debug("pycocotools summary:\n%s", printed.getvalue())
    precision = np.asarray(evaluator.eval["precision"])
    category_ids = tuple(int(c) for c in evaluator.params.catIds)
    names = {int(k): str(v) for k, v in label_names.items()}
    metrics = {key: float(value) for key, value in zip(SUMMARY_KEYS, evaluator.stats, strict=False)}
    metrics.update(_per_class_ap(precision, category_ids, names))
    return CocoEvaluation(
        metrics=metrics,
        precision=precision,
        category_ids=category_ids,
        iou_thresholds=tuple(float(t) for t in evaluator.params.iouThrs),
        recall_points=tuple(float(r) for r in evaluator.params.recThrs),
        label_names=names,
    )


def _per_class_ap(
    precision: np.ndarray, category_ids: Sequence[int], label_names: Mapping[int, str]
) -> dict[str, float]:
    """``AP_/<name>`` per class: the mean of the defined precision entries of the class,
    area "all" (index 0), 100 detections (index -1), as ``COCOeval.summarize`` does."""
    cat_index = {cat_id: k for k, cat_id in enumerate(category_ids)}
    out = {}
    for cat_id, name in sorted(label_names.items()):
        k = cat_index.get(int(cat_id))
        values = precision[:, :, k, 0, -1] if k is not None else np.empty(0)
        values = values[values > -1]
        out[PER_CLASS_PREFIX + name] = float(np.mean(values)) if values.size else -1.0
    return out


def coco_metrics(
    ground_truth: Mapping[str, Any] | str | os.PathLike,
    detections: Sequence[Mapping[str, Any]],
    label_names: Mapping[int, str] | None = None,
) -> dict[str, float]:
    """COCO bounding-box metrics of ``detections`` against ``ground_truth``.

    Args: as :func:`evaluate_coco`.

    Returns:
      ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10",
      "ARmax100", "AP_/<name>" per class}`` as Python floats in 0..1
      (-1.0 where pycocotools reports the metric as undefined).

    Raises:
      ValueError: a detection of an image the ground truth does not list.
      OSError: the ground truth file cannot be read.
    """
    return evaluate_coco(ground_truth, detections, label_names).metrics


# --- precision/recall curves ------------------------------------------------------------


def _mean_defined(values: np.ndarray, axes: tuple[int, ...]) -> list[float | None]:
    """Mean over ``axes`` of the entries > -1, rounded; None where no entry is defined."""
    defined = values > -1
    total = np.where(defined, values, 0.0).sum(axis=axes)
    count = defined.sum(axis=axes)
    means = total / np.maximum(count, 1)
    return [
        round(float(m), CURVE_DECIMALS) if n else None
        for m, n in zip(means.tolist(), count.tolist(), strict=True)
    ]


def pr_curves(evaluation: CocoEvaluation) -> dict[str, Any]:
    """Precision at each recall point of one evaluation (area "all", 100 detections).

    ``iou50`` is the precision at IoU 0.5; ``mean`` the mean over the IoU
    thresholds .50:.95. ``all`` averages, at each recall point, the classes'
    entries pycocotools defines (> -1); a point without any is None. The mean
    of ``all.iou50`` over the recall points is pycocotools' AP50, of
    ``all.mean`` its AP (up to the rounding to :data:`CURVE_DECIMALS`).

    Returns:
      ``{"all": {"iou50": [R], "mean": [R]}, "per_class": {name: {"iou50": [R],
      "mean": [R]}}}`` (classes of ``evaluation.label_names``, sorted by id; a
      class the ground truth does not define is all None).
    """
    precision = evaluation.precision[:, :, :, 0, -1]  # [T, R, K]
    if evaluation.iou_thresholds[0] != 0.5:
        raise ValueError(f"the first IoU threshold is {evaluation.iou_thresholds[0]}, not 0.5")
    curves: dict[str, Any] = {
        "all": {
            IOU50: _mean_defined(precision[0], (1,)),
            IOU_MEAN: _mean_defined(precision, (0, 2)),
        },
        "per_class": {},
    }
    cat_index = {cat_id: k for k, cat_id in enumerate(evaluation.category_ids)}
    undefined = np.full((1, precision.shape[1]), -1.0)
    for cat_id, name in sorted(evaluation.label_names.items()):
        k = cat_index.get(cat_id)
        values = precision[:, :, k] if k is not None else undefined  # [T, R]
        curves["per_class"][name] = {
            IOU50: _mean_defined(values[:1], (0,)),
            IOU_MEAN: _mean_defined(values, (0,)),
        }
    return curves


def pr_curves_document(
    curves: Mapping[str, Mapping[str, Any]], recall_points: Sequence[float]
) -> dict[str, Any]:
    """The content of ``pr_curves.json``: the recall points and each variant's :func:`pr_curves`."""
    return {
        "version": 1,
        "recall": [round(float(r), 2) for r in recall_points],
        "variants": {name: dict(value) for name, value in curves.items()},
    }
