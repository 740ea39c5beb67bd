"""COCO box metrics computed by pycocotools, shared by every evaluator in qatflow.

One function, :func:`coco_metrics`, turns COCO ground truth and a list of COCO
detection dicts into the AP family that tflite-model-maker's ``evaluate``
returns. All numbers come from ``pycocotools.cocoeval.COCOeval`` (``stats`` for
the summary, its accumulated ``precision`` array for the per-class AP); nothing
here re-implements AP.

Values are fractions in 0..1 exactly as pycocotools gives them (not
percentages). A value of -1.0 means "undefined": pycocotools' convention when
the ground truth holds no box for that area range or class. Empty detections
are valid input and give 0.0 for every defined metric.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_maker.core.data import fileio
from model_maker.core.metrics_document import PER_CLASS_PREFIX, SUMMARY_KEYS  # noqa: F401 - API

LOG = logging.getLogger("qatflow")

#: Keys of the summary metrics, in the order of ``COCOeval.stats``.


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


def coco_metrics(
    ground_truth: Mapping[str, Any] | str | os.PathLike,
    detections: Sequence[Mapping[str, Any]],
    label_names: Mapping[int, str] | None = None,
) -> dict[str, float]:
    """COCO bounding-box metrics of ``detections`` against ``ground_truth``.

    Args:
      ground_truth: COCO instances dict, or the path of a COCO JSON file.
      detections: COCO result dicts with ``image_id``, ``category_id``,
        ``bbox`` ``[x, y, width, height]`` in pixels of the original image and
        ``score``. May be empty.
      label_names: category id -> name for the ``AP_/<name>`` keys; defaults
        to the names of the ground truth's ``categories``.

    Returns:
      ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10",
      "ARmax100", "AP_/<name>" per class}`` as Python floats in 0..1
      (-1.0 where pycocotools reports the metric as undefined).
    """
    # deferred: pycocotools loads only where COCO metrics are computed
    from pycocotools.cocoeval import COCOeval

    gt_data = _load_ground_truth(ground_truth)
    if label_names is None:
        label_names = {int(c["id"]): str(c["name"]) for c in gt_data["categories"]}
    known_images = {img["id"] for img in gt_data["images"]}
    dets = []
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
    dt_data = {
        "info": gt_data["info"],
        "images": list(gt_data["images"]),
        "categories": copy.deepcopy(gt_data["categories"]),
        "annotations": dets,
    }
    coco_gt = _coco_from_dict(gt_data)
    coco_dt = _coco_from_dict(dt_data)

    evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    LOG.debug("pycocotools summary:\n%s", printed.getvalue())

    metrics = {key: float(value) for key, value in zip(SUMMARY_KEYS, evaluator.stats, strict=False)}
    # precision: [IoU thresholds, recall points, categories, area ranges, max dets];
    # area range 0 is "all", max-dets index -1 is 100, as in COCOeval.summarize.
    precision = evaluator.eval["precision"]
    cat_index = {cat_id: k for k, cat_id in enumerate(evaluator.params.catIds)}
    for cat_id, name in sorted(label_names.items()):
        k = cat_index.get(int(cat_id))
        if k is None:
            metrics[PER_CLASS_PREFIX + name] = -1.0
            continue
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        metrics[PER_CLASS_PREFIX + name] = float(np.mean(values)) if values.size else -1.0
    return metrics
