"""The gallery of a run's evaluation, read from the files the Evaluator writes (contract 18).

Detection: ``detections.json`` lists every eval image (most different from the float
baseline first) with its ground truth, each variant's boxes (COCO ``[x, y, w, h,
score, category id]`` in pixels of the original image) and the difference numbers;
``gallery/<id>.jpg`` thumbnails are scaled copies, so boxes are drawn in an SVG whose
viewBox is the original image size. Classification: ``predictions.json`` holds each
image's label and every variant's ``[predicted index, probability]``; the gallery
shows the images a variant got wrong.

Nothing here trusts the documents: malformed images and boxes are skipped (and
counted), a thumbnail path that is not a plain relative image path inside the
artifact is dropped (the app checks it again before serving). File and class names
are user data: the templates escape them, the browser script sets them as text.
The dashboard never computes detections or differences; it shows what was written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboard import files, store

DETECTIONS_FILE = "detections.json"
PREDICTIONS_FILE = "predictions.json"
#: Only files with these suffixes are served as thumbnails.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PAGE_SIZE = 50
#: The score threshold of the slider when detections.json gives no ``diff_threshold``.
DEFAULT_THRESHOLD = 0.3
#: ``data-variant`` of the ground-truth boxes, and their colour (distinct from the palette).
GROUND_TRUTH = "ground_truth"
GROUND_TRUTH_COLOUR = "#00c853"
#: Variant colours, in the order the variants are listed (the baseline first).
PALETTE = (
    "#1565c0", "#ef6c00", "#d81b60", "#6a1b9a", "#00838f", "#827717", "#5d4037", "#37474f",
)  # fmt: skip


def _number(value: Any) -> float | None:
    """A finite JSON number as a float, else None (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def _boxes(raw: Any, size: int) -> list[list[float]]:
    """The well-formed boxes of a list: ``size`` finite numbers each (the last, the
    category, an integer); width and height positive."""
    out = []
    for box in raw if isinstance(raw, list) else []:
        if not isinstance(box, list) or len(box) < size:
            continue
        values = [_number(v) for v in box[:size]]
        category = _integer(box[size - 1])
        if any(v is None for v in values) or category is None or values[2] <= 0 or values[3] <= 0:
            continue
        out.append([*values[: size - 1], category])
    return out


def _thumbnail(value: Any) -> str:
    """A thumbnail path of a document if it is a plain relative image path, else ""."""
    if not isinstance(value, str) or not value or "\x00" in value or "\\" in value:
        return ""
    if value.startswith("/") or ".." in value.split("/"):
        return ""
    return value if value.lower().endswith(IMAGE_SUFFIXES) else ""


def colours(variants: Sequence[str]) -> dict[str, str]:
    """variant -> colour, from :data:`PALETTE` in order (repeating past its end)."""
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}


@dataclass(frozen=True)
class Availability:
    """Whether a run has a gallery and where its document is.

    Attributes:
      kind: ``detection``, ``classification`` or "" (no gallery).
      path: the gallery document (detections.json or predictions.json), "" when none.
      message: why there is no gallery ("" when there is one).
    """

    kind: str
    path: str = ""
    message: str = ""


def availability(detail: store.RunDetail) -> Availability:
    """The gallery of a run: its evaluation artifact's detections.json or predictions.json.

    Runs evaluated before the Evaluator wrote them say so instead.
    """
    uri = detail.evaluation_uri
    if not uri:
        return Availability("", message="no gallery in this run (it has no evaluation)")
    candidates = [("detection", DETECTIONS_FILE), ("classification", PREDICTIONS_FILE)]
    if store.task_of(detail.metrics) == store.CLASSIFICATION:
        candidates.reverse()
    for kind, name in candidates:
        path = os.path.join(uri, name)
        if os.path.isfile(path):
            return Availability(kind, path)
    return Availability(
        "",
        message=f"no gallery in this run (evaluated before the Evaluator wrote {candidates[0][1]})",
    )


@dataclass(frozen=True)
class Page:
    """One page of a list: its items, the page number (1-based), the page count, the
    position of its first item in the whole list and the list's length."""

    items: list[Any]
    number: int
    pages: int
    start: int
    total: int


def paginate(items: Sequence[Any], number: int, size: int | None = None) -> Page:
    """Page ``number`` (clamped to 1..pages) of ``items``, ``size`` (:data:`PAGE_SIZE`) per page."""
    size = size or PAGE_SIZE
    pages = max(1, -(-len(items) // size))
    number = min(max(number, 1), pages)
    start = (number - 1) * size
    return Page(list(items[start : start + size]), number, pages, start, len(items))


# --- detection --------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionImage:
    """One eval image of detections.json.

    Attributes:
      id: COCO image id.
      rank: position in detections.json's order (0: the most different).
      file_name: as written (user data).
      width: original image width (pixels; boxes are in these pixels).
      height: original image height.
      thumbnail: thumbnail path inside the evaluation artifact ("" when none).
      ground_truth: ``[x, y, w, h, category id]`` boxes.
      difference: variant -> difference to the baseline (0..1, None when unknown).
      boxes: variant -> ``[x, y, w, h, score, category id]`` boxes.
    """

    id: int
    rank: int
    file_name: str
    width: float
    height: float
    thumbnail: str
    ground_truth: list[list[float]] = field(default_factory=list)
    difference: dict[str, float | None] = field(default_factory=dict)
    boxes: dict[str, list[list[float]]] = field(default_factory=dict)

    @property
    def max_difference(self) -> float | None:
        values = [v for v in self.difference.values() if v is not None]
        return max(values) if values else None

    def client(self) -> dict[str, Any]:
        """What the browser script draws: size, ground truth and boxes."""
        return {"w": self.width, "h": self.height, "gt": self.ground_truth, "boxes": self.boxes}


@dataclass(frozen=True)
class DetectionGallery:
    """detections.json, checked.

    Attributes:
      variants: variants with detections, the baseline first.
      baseline: the float reference ("" when none).
      categories: category id -> name.
      images: the images in the document's order.
      diff_threshold: score threshold of the differences (also the slider's default).
      score_floor: detections below this score were not stored.
      skipped: malformed image entries left out.
      error: why there are no images ("" when the document was read).
    """

    variants: list[str] = field(default_factory=list)
    baseline: str = ""
    categories: dict[int, str] = field(default_factory=dict)
    images: list[DetectionImage] = field(default_factory=list)
    diff_threshold: float = DEFAULT_THRESHOLD
    score_floor: float = 0.0
    skipped: int = 0
    error: str = ""

    @property
    def colours(self) -> dict[str, str]:
        return colours(self.variants)

    def position(self, image_id: int) -> int | None:
        """Index of the image with ``image_id`` in :attr:`images` (None when absent)."""
        return next((i for i, im in enumerate(self.images) if im.id == image_id), None)

    def client_data(self, images: Sequence[DetectionImage]) -> dict[str, Any]:
        """The JSON the browser script draws ``images`` from."""
        return {
            "variants": [{"name": v, "colour": c} for v, c in self.colours.items()],
            "groundTruth": {"name": GROUND_TRUTH, "colour": GROUND_TRUTH_COLOUR},
            "categories": {str(k): v for k, v in self.categories.items()},
            "images": {str(im.id): im.client() for im in images},
        }


def read_detections(path: str) -> DetectionGallery:
    """detections.json at ``path``; a gallery with ``error`` set when it cannot be used."""
    document, error = files.read_json(path)
    if error:
        return DetectionGallery(error=error)
    if not isinstance(document, Mapping) or not isinstance(document.get("images"), list):
        return DetectionGallery(error=f"{DETECTIONS_FILE} has no list of images")
    categories = {}
    for entry in document.get("categories") or []:
        if isinstance(entry, Mapping) and _integer(entry.get("id")) is not None:
            categories[_integer(entry["id"])] = str(entry.get("name", ""))
    raw = document.get("detections")
    raw = raw if isinstance(raw, Mapping) else {}
    baseline = str(document.get("baseline") or "")
    variants = [str(v) for v in raw if isinstance(raw[v], Mapping)]
    if baseline in variants:
        variants = [baseline, *(v for v in variants if v != baseline)]
    images, skipped = [], 0
    for entry in document["images"]:
        image_id = _integer(entry.get("id")) if isinstance(entry, Mapping) else None
        width = _number(entry.get("width")) if image_id is not None else None
        height = _number(entry.get("height")) if image_id is not None else None
        if image_id is None or not width or not height or width <= 0 or height <= 0:
            skipped += 1
            continue
        difference = entry.get("difference")
        difference = difference if isinstance(difference, Mapping) else {}
        images.append(
            DetectionImage(
                id=image_id,
                rank=len(images),
                file_name=str(entry.get("file_name") or ""),
                width=width,
                height=height,
                thumbnail=_thumbnail(entry.get("thumbnail")),
                ground_truth=_boxes(entry.get("ground_truth"), 5),
                difference={str(k): _number(v) for k, v in difference.items()},
                boxes={v: _boxes(raw[v].get(str(image_id)), 6) for v in variants},
            )
        )
    threshold = _number(document.get("diff_threshold"))
    if threshold is None or not 0 <= threshold <= 1:
        threshold = DEFAULT_THRESHOLD
    return DetectionGallery(
        variants=variants,
        baseline=baseline,
        categories=categories,
        images=images,
        diff_threshold=threshold,
        score_floor=_number(document.get("score_floor")) or 0.0,
        skipped=skipped,
    )


# --- classification ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifiedImage:
    """One eval image of predictions.json.

    Attributes:
      index: the image's index (names its thumbnail).
      file_name: as written (user data).
      label: true class index (0-based).
      thumbnail: thumbnail path inside the evaluation artifact ("" when none).
      predictions: variant -> (predicted class index, probability of that prediction).
    """

    index: int
    file_name: str
    label: int
    thumbnail: str
    predictions: dict[str, tuple[int | None, float | None]] = field(default_factory=dict)

    def wrong(self, variant: str) -> bool:
        predicted = self.predictions.get(variant, (None, None))[0]
        return predicted is not None and predicted != self.label


@dataclass(frozen=True)
class PredictionGallery:
    """predictions.json, checked.

    Attributes:
      classes: class names, index = class id - 1.
      baseline: the float reference ("" when none).
      variants: variants with predictions, in the document's order.
      images: images with a valid label, in the document's order.
      skipped: malformed image entries left out.
      error: why there are no images ("" when the document was read).
    """

    classes: list[str] = field(default_factory=list)
    baseline: str = ""
    variants: list[str] = field(default_factory=list)
    images: list[ClassifiedImage] = field(default_factory=list)
    skipped: int = 0
    error: str = ""

    def class_name(self, index: int | None) -> str:
        if index is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return "?" if index is None else f"class {index}"

    def misclassified(self, variant: str) -> list[ClassifiedImage]:
        """Images ``variant`` got wrong, the most confident mistakes first (then by index)."""
        wrong = [im for im in self.images if im.wrong(variant)]
        return sorted(wrong, key=lambda im: (-(im.predictions[variant][1] or 0.0), im.index))

    def errors(self) -> dict[str, int]:
        """variant -> number of misclassified images."""
        return {v: sum(im.wrong(v) for im in self.images) for v in self.variants}

    def pick(self, wanted: str, candidate: str = "") -> str:
        """``wanted`` if it has predictions; else the candidate; else the first non-baseline."""
        for name in (wanted, candidate):
            if name and name in self.variants:
                return name
        others = [v for v in self.variants if v != self.baseline]
        return (others or self.variants or [""])[0]


def _prediction(raw: Any) -> tuple[int | None, float | None]:
    if not isinstance(raw, list) or not raw:
        return None, None
    probability = _number(raw[1]) if len(raw) > 1 else None
    return _integer(raw[0]), probability


def read_predictions(path: str) -> PredictionGallery:
    """predictions.json at ``path``; a gallery with ``error`` set when it cannot be used."""
    document, error = files.read_json(path)
    if error:
        return PredictionGallery(error=error)
    if not isinstance(document, Mapping) or not isinstance(document.get("images"), list):
        return PredictionGallery(error=f"{PREDICTIONS_FILE} has no list of images")
    classes = [str(c) for c in document.get("classes") or []]
    raw = document.get("predictions")
    raw = raw if isinstance(raw, Mapping) else {}
    variants = [str(v) for v in raw if isinstance(raw[v], list)]
    images, skipped = [], 0
    for position, entry in enumerate(document["images"]):
        label = _integer(entry.get("label")) if isinstance(entry, Mapping) else None
        index = _integer(entry.get("index")) if isinstance(entry, Mapping) else None
        if label is None:
            skipped += 1
            continue
        predictions = {
            v: _prediction(raw[v][position]) if position < len(raw[v]) else (None, None)
            for v in variants
        }
        images.append(
            ClassifiedImage(
                index=position if index is None else index,
                file_name=str(entry.get("file_name") or ""),
                label=label,
                thumbnail=_thumbnail(entry.get("thumbnail")),
                predictions=predictions,
            )
        )
    return PredictionGallery(
        classes=classes,
        baseline=str(document.get("baseline") or ""),
        variants=variants,
        images=images,
        skipped=skipped,
    )
