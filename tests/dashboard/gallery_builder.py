"""Writes the Evaluator's gallery files for the dashboard tests, exactly as contract 18 says.

Until the Evaluator writes them itself, these stand in for it:

- detection: ``detections.json`` (every eval image with its ground truth, each variant's
  boxes, the difference to the float baseline, sorted most different first),
  ``pr_curves.json`` (101 recall points per variant, all classes and per class, IoU 0.5
  and mean over .50:.95) and ``gallery/<id>.jpg`` thumbnails (longest side <= 512 px,
  never upscaled, JPEG quality 85) of the first ``GALLERY_IMAGES`` images in that order;
- classification: ``predictions.json`` (each image's label and every variant's
  prediction and probability, agreeing with the confusion matrices of metrics.json) and
  thumbnails of the images some variant misclassified, most-disagreed first.

Images are drawn with Pillow (shapes on a plain background, one per ground-truth box);
detections are the ground truth jittered per variant plus low-score false positives,
from a seeded ``random.Random``, so every run of the tests writes the same files.
All JSON is strict and compact, as the contract asks.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DETECTIONS_FILE = "detections.json"
PR_CURVES_FILE = "pr_curves.json"
PREDICTIONS_FILE = "predictions.json"
GALLERY_DIR = "gallery"
GALLERY_IMAGES = 100
THUMBNAIL_SIDE = 512
SCORE_FLOOR = 0.05
DIFF_THRESHOLD = 0.3
MAX_BOXES = 100
RECALL = [round(i / 100, 2) for i in range(101)]
#: (probability a ground-truth box is found, jitter as a share of the box, chance of a
#: wrong class) of a variant, by the first word of its name that matches.
_QUALITY = {"ptq": (0.8, 0.08, 0.1), "qat": (0.92, 0.04, 0.03), "fp16": (0.95, 0.02, 0.01)}
_BASELINE_QUALITY = (0.97, 0.01, 0.0)
_SHAPE_COLOURS = ((200, 40, 40), (30, 90, 200), (40, 150, 60), (150, 60, 160), (220, 150, 20))


@dataclass(frozen=True)
class GallerySpec:
    """What a run's detection gallery files hold.

    Attributes:
      images: eval images.
      objects: ground-truth boxes per image.
      false_positives: extra low-score boxes per image and variant.
      thumbnails: thumbnails are written for the first this many images (in the sorted
        order; the contract's GALLERY_IMAGES is 100); the others have ``thumbnail: null``.
      variants: variants in detections.json / pr_curves.json (the baseline first).
      baseline: the float reference ("" for none: all differences are 0).
      file_prefix: prefix of every file name (hostile names in the tests).
      seed: of the random boxes.
    """

    images: int = 8
    objects: int = 3
    false_positives: int = 2
    thumbnails: int = 6
    variants: tuple[str, ...] = ("float32", "ptq_int8", "qat_int8")
    baseline: str = "float32"
    file_prefix: str = ""
    seed: int = 18


def _dump(path: str, document: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(document, fh, allow_nan=False, separators=(",", ":"))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two COCO [x, y, w, h] boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def difference(
    boxes: Sequence[Sequence[float]], base: Sequence[Sequence[float]], threshold: float
) -> float:
    """1 - matched / max(n, n_base) over boxes >= threshold; greedy one-to-one matches,
    highest score first, same category, IoU >= 0.5 (contract 18); 0.0 when both are empty."""
    ours = sorted((b for b in boxes if b[4] >= threshold), key=lambda b: -b[4])
    theirs = sorted((b for b in base if b[4] >= threshold), key=lambda b: -b[4])
    if not ours and not theirs:
        return 0.0
    used: set[int] = set()
    matched = 0
    for box in ours:
        best, best_iou = -1, 0.5
        for j, other in enumerate(theirs):
            if j in used or other[5] != box[5]:
                continue
            value = iou(box, other)
            if value >= best_iou:
                best, best_iou = j, value
        if best >= 0:
            used.add(best)
            matched += 1
    return 1.0 - matched / max(len(ours), len(theirs))


def _quality(variant: str, baseline: str) -> tuple[float, float, float]:
    if variant == baseline:
        return _BASELINE_QUALITY
    return next((q for key, q in _QUALITY.items() if key in variant), (0.95, 0.02, 0.01))


def _size(image_id: int) -> tuple[int, int]:
    # Odd ids are larger than a thumbnail (scaled down); even ids are small (kept as they are).
    return (640, 480) if image_id % 2 else (400, 400)


def _draw(width: int, height: int, truth: Sequence[Sequence[float]], rng: random.Random):
    from PIL import Image, ImageDraw

    background = tuple(rng.randint(200, 245) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for x, y, w, h, category in truth:
        colour = _SHAPE_COLOURS[(int(category) - 1) % len(_SHAPE_COLOURS)]
        shape = (int(category) - 1) % 3
        if shape == 0:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
        elif shape == 1:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        else:
            draw.polygon([(x + w / 2, y), (x + w, y + h), (x, y + h)], fill=colour)
    return image


def _thumbnail(image, path: str) -> None:
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # only ever shrinks
    os.makedirs(os.path.dirname(path), exist_ok=True)
    thumb.convert("RGB").save(path, "JPEG", quality=85)


def _detect(
    truth: Sequence[Sequence[float]],
    width: int,
    height: int,
    quality: tuple[float, float, float],
    categories: int,
    false_positives: int,
    rng: random.Random,
) -> list[list[float]]:
    found, jitter, wrong = quality
    boxes = []
    for x, y, w, h, category in truth:
        if rng.random() > found:
            continue
        dx, dy = rng.gauss(0, jitter) * w, rng.gauss(0, jitter) * h
        dw, dh = rng.gauss(0, jitter) * w, rng.gauss(0, jitter) * h
        label = rng.randint(1, categories) if rng.random() < wrong else category
        boxes.append([x + dx, y + dy, max(2.0, w + dw), max(2.0, h + dh), rng.uniform(0.45, 0.99),
                      label])  # fmt: skip
    for _ in range(false_positives):
        w, h = rng.uniform(0.05, 0.2) * width, rng.uniform(0.05, 0.2) * height
        boxes.append([rng.uniform(0, width - w), rng.uniform(0, height - h), w, h,
                      rng.uniform(SCORE_FLOOR, 0.45), rng.randint(1, categories)])  # fmt: skip
    rounded = [
        [round(b[0], 1), round(b[1], 1), round(b[2], 1), round(b[3], 1), round(b[4], 3), b[5]]
        for b in boxes
    ]
    rounded = [b for b in rounded if b[4] >= SCORE_FLOOR]
    return sorted(rounded, key=lambda b: -b[4])[:MAX_BOXES]


def _precision(recall: float, steepness: float) -> float:
    return round(max(0.0, 1.0 - recall**steepness), 4)


def pr_curves_document(variants: Sequence[str], class_names: Sequence[str]) -> dict[str, Any]:
    """pr_curves.json: falling precision curves, a little lower for each later variant."""
    out: dict[str, Any] = {}
    for v, variant in enumerate(variants):
        per_class = {}
        for k, name in enumerate(class_names):
            steep = max(0.5, 4.0 - 0.6 * v - 0.4 * k)
            iou50 = [_precision(r, steep) for r in RECALL]
            per_class[name] = {"iou50": iou50, "mean": [round(p * 0.7, 4) for p in iou50]}
        summary = {
            key: [
                round(sum(c[key][i] for c in per_class.values()) / len(per_class), 4)
                for i in range(len(RECALL))
            ]
            for key in ("iou50", "mean")
        }
        out[variant] = {"all": summary, "per_class": per_class}
    return {"version": 1, "recall": RECALL, "variants": out}


def write_detection_gallery(
    folder: str, spec: GallerySpec, class_names: Sequence[str]
) -> dict[str, Any]:
    """detections.json, pr_curves.json and thumbnails into ``folder``; returns detections.json."""
    rng = random.Random(spec.seed)
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    images, pictures = [], {}
    detections: dict[str, dict[str, list]] = {v: {} for v in spec.variants}
    for image_id in range(1, spec.images + 1):
        width, height = _size(image_id)
        truth = []
        for _ in range(spec.objects):
            w, h = rng.uniform(0.15, 0.35) * width, rng.uniform(0.15, 0.35) * height
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            category = rng.randint(1, len(categories))
            truth.append([round(x, 1), round(y, 1), round(w, 1), round(h, 1), category])
        pictures[image_id] = _draw(width, height, truth, rng)
        for variant in spec.variants:
            detections[variant][str(image_id)] = _detect(
                truth, width, height, _quality(variant, spec.baseline), len(categories),
                spec.false_positives, rng,
            )  # fmt: skip
        base = detections.get(spec.baseline, {}).get(str(image_id))
        images.append(
            {
                "id": image_id,
                "file_name": f"{spec.file_prefix}img_{image_id:03d}.jpg",
                "width": width,
                "height": height,
                "thumbnail": None,
                "ground_truth": truth,
                "difference": {
                    v: round(difference(detections[v][str(image_id)], base, DIFF_THRESHOLD), 4)
                    if base is not None
                    else 0.0
                    for v in spec.variants
                    if v != spec.baseline
                },
            }
        )
    images.sort(key=lambda im: (-max(im["difference"].values(), default=0.0), im["id"]))
    for image in images[: min(spec.thumbnails, GALLERY_IMAGES)]:
        image["thumbnail"] = f"{GALLERY_DIR}/{image['id']}.jpg"
        _thumbnail(pictures[image["id"]], os.path.join(folder, GALLERY_DIR, f"{image['id']}.jpg"))
    document = {
        "version": 1,
        "score_floor": SCORE_FLOOR,
        "diff_threshold": DIFF_THRESHOLD,
        "baseline": spec.baseline,
        "categories": categories,
        "images": images,
        "detections": detections,
    }
    _dump(os.path.join(folder, DETECTIONS_FILE), document)
    _dump(os.path.join(folder, PR_CURVES_FILE), pr_curves_document(spec.variants, class_names))
    return document


def predictions_document(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """predictions.json agreeing with every variant's confusion matrix in ``metrics``.

    Images are listed class by class; within a class the first images are the ones a
    variant gets wrong (the variants with more errors get a superset wrong).
    """
    classes = list(metrics["classes"])
    variants = [e for e in metrics["variants"] if e.get("confusion_matrix")]
    totals = [sum(row) for row in variants[0]["confusion_matrix"]]
    images = []
    for label, total in enumerate(totals):
        for k in range(total):
            images.append(
                {
                    "index": len(images),
                    "file_name": f"val/{classes[label]}/{label}_{k:03d}.jpg",
                    "label": label,
                    "thumbnail": None,
                }
            )
    predictions: dict[str, list] = {}
    for v, entry in enumerate(variants):
        out = []
        for label, row in enumerate(entry["confusion_matrix"]):
            wrong = [j for j, count in enumerate(row) if j != label for _ in range(count)]
            for k in range(totals[label]):
                predicted = wrong[k] if k < len(wrong) else label
                out.append([predicted, round(0.55 + ((k * 7 + v * 3) % 40) / 100, 3)])
        predictions[entry["variant"]] = out
    return {
        "version": 1,
        "classes": classes,
        "baseline": metrics.get("baseline") or "",
        "images": images,
        "predictions": predictions,
    }


def write_classification_gallery(folder: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """predictions.json and thumbnails of the misclassified images; returns predictions.json."""
    from PIL import Image, ImageDraw

    document = predictions_document(metrics)
    images = document["images"]
    wrong = {
        image["index"]: sum(
            preds[image["index"]][0] != image["label"] for preds in document["predictions"].values()
        )
        for image in images
    }
    order = sorted((i for i in wrong if wrong[i]), key=lambda i: (-wrong[i], i))
    for index in order[:GALLERY_IMAGES]:
        image = images[index]
        picture = Image.new("RGB", (320, 240), (235, 230, 220))
        colour = _SHAPE_COLOURS[image["label"] % len(_SHAPE_COLOURS)]
        ImageDraw.Draw(picture).ellipse([100 + index % 40, 60, 220 + index % 40, 180], fill=colour)
        image["thumbnail"] = f"{GALLERY_DIR}/{index}.jpg"
        _thumbnail(picture, os.path.join(folder, GALLERY_DIR, f"{index}.jpg"))
    _dump(os.path.join(folder, PREDICTIONS_FILE), document)
    return document
