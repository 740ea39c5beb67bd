"""Per-image results of an evaluation: stored detections, their differences, thumbnails.

Besides ``metrics.json`` the Evaluator writes what a person needs to *see*
where the quantized variants go wrong (the dashboard reads these files, it
never runs a model):

- ``detections.json`` (detection): every eval image with its ground truth and
  every variant's boxes (COCO ``[x, y, w, h]`` in pixels of the original
  image, rounded to 0.1 px, scores to 0.001; at most :data:`MAX_BOXES` per
  image and variant, only scores >= :data:`SCORE_FLOOR`), and per image the
  *difference* of each variant to the float baseline (:func:`box_difference`,
  computed on the stored boxes, so a reader can recompute it; rounded to 4
  decimals; 0.0 for every variant when there is no baseline). Images are
  ordered by their largest difference over the int8 variants (all compared
  variants when none is int8), most different first, ties by image id.
- ``predictions.json`` (classification): per eval image (record order) its
  file name and true class, and each variant's predicted class with its
  probability (:func:`predictions_document`); misclassified images are
  ordered by how many variants get them wrong.
- ``gallery/<name>.jpg``: RGB JPEG (quality :data:`JPEG_QUALITY`) thumbnails,
  longest side <= :data:`THUMBNAIL_SIDE` px, never upscaled, of the first
  :data:`GALLERY_IMAGES` images of that order (classification: of the
  misclassified images).
- a report section: the top :data:`REPORT_IMAGES` images as inline JPEG
  ``data:`` URIs (<= :data:`REPORT_SIDE` px): detection, one per variant
  (baseline and int8) with its boxes drawn; classification, with the true
  class and each variant's prediction.

The images are read once, in the driver, one at a time: only the decoded
image at hand and the small report copies are held in memory. All JSON is
strict (no NaN/Infinity) and compact; :func:`strict_json` writes it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from model_maker.core.data import fileio

LOG = logging.getLogger("qatflow")

GALLERY_DIR = "gallery"
DETECTIONS_FILE = "detections.json"
PREDICTIONS_FILE = "predictions.json"
#: Thumbnails written (the first images of the gallery order).
GALLERY_IMAGES = 100
#: Longest side of a gallery thumbnail in pixels.
THUMBNAIL_SIDE = 512
#: Longest side of an image embedded in report.html.
REPORT_SIDE = 160
#: Images embedded in report.html.
REPORT_IMAGES = 6
JPEG_QUALITY = 85
#: Detections below this score are not stored.
SCORE_FLOOR = 0.05
#: Score from which a box counts for the difference (and is drawn in the report).
DIFF_THRESHOLD = 0.3
#: IoU from which two boxes of the same class match.
MATCH_IOU = 0.5
#: Boxes stored per image and variant (the highest scores).
MAX_BOXES = 100
#: Outline colours of the drawn boxes, by category id (cycled).
BOX_COLOURS = (
    (255, 215, 0),
    (0, 229, 255),
    (255, 64, 129),
    (118, 255, 3),
    (255, 145, 0),
    (213, 0, 249),
)


def strict_json(document: Any) -> str:
    """Compact JSON text of ``document``.

    Raises:
      ValueError: the document holds NaN or an infinity (undefined values must be None).
    """
    return json.dumps(document, allow_nan=False, separators=(",", ":"))


# --- stored detections and their difference --------------------------------------------


def compact_detections(
    detections: Iterable[Mapping[str, Any]],
    *,
    score_floor: float = SCORE_FLOOR,
    max_boxes: int = MAX_BOXES,
) -> dict[str, list[list[float]]]:
    """COCO result dicts as stored boxes: image id (text) -> ``[[x, y, w, h, score, category_id]]``.

    Per image the boxes with ``score >= score_floor`` (raw score) and finite
    values, highest scores first (stable), at most ``max_boxes``; coordinates
    rounded to 1 decimal, scores to 3.
    """
    by_image: dict[str, list[tuple[float, list[float], int]]] = {}
    for det in detections:
        score = float(det["score"])
        box = [float(v) for v in det["bbox"]]
        if not (score >= score_floor and all(math.isfinite(v) for v in box)):
            continue
        by_image.setdefault(str(det["image_id"]), []).append((score, box, int(det["category_id"])))
    out = {}
    for image_id, found in by_image.items():
        found.sort(key=lambda item: -item[0])
        out[image_id] = [
            [*(round(v, 1) for v in box), round(score, 3), category]
            for score, box, category in found[:max_boxes]
        ]
    return out


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x, y, w, h, ...]`` boxes (0.0 when both are empty)."""
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def box_difference(
    boxes: Sequence[Sequence[float]],
    baseline_boxes: Sequence[Sequence[float]],
    threshold: float = DIFF_THRESHOLD,
    match_iou: float = MATCH_IOU,
) -> float:
    """How much one image's boxes differ from the baseline's, 0 (same) to 1 (disjoint).

    ``1 - matched / max(n, n_base)`` over the boxes ``[x, y, w, h, score,
    category_id]`` with ``score >= threshold``; ``matched`` pairs boxes one to
    one, greedily: each box of ``boxes``, highest score first, takes the
    unmatched baseline box of its category with the highest IoU, if that IoU
    is >= ``match_iou``. 0.0 when both sides have no box.
    """
    mine = sorted((b for b in boxes if b[4] >= threshold), key=lambda b: -b[4])
    theirs = [b for b in baseline_boxes if b[4] >= threshold]
    if not mine and not theirs:
        return 0.0
    free = list(range(len(theirs)))
    matched = 0
    for box in mine:
        best, best_iou = None, match_iou
        for j in free:
            if theirs[j][5] == box[5]:
                overlap = box_iou(box, theirs[j])
                if overlap >= best_iou:
                    best, best_iou = j, overlap
        if best is not None:
            free.remove(best)
            matched += 1
    return 1.0 - matched / max(len(mine), len(theirs))


def compared_variants(variants: Sequence[str], baseline: str) -> tuple[list[str], list[str]]:
    """(variants that get a difference: all but the baseline; the ones ordering the
    images: the int8 ones among them, or all of them when none is int8)."""
    compared = [v for v in variants if v != baseline]
    int8 = [v for v in compared if "int8" in v]
    return compared, int8 or compared


def _gallery_order(image: Mapping[str, Any], ordering: Sequence[str]) -> tuple[float, int, Any]:
    """Sort key: the largest difference over ``ordering`` descending, then the id
    (integer ids numerically, before any other id as text)."""
    largest = max((image["difference"][v] for v in ordering), default=0.0)
    image_id = image["id"]
    if isinstance(image_id, int):
        return (-largest, 0, image_id)
    return (-largest, 1, str(image_id))


def _ground_truth_boxes(ground_truth: Mapping[str, Any]) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for ann in ground_truth.get("annotations") or []:
        box = [round(float(v), 1) for v in ann["bbox"]]
        out.setdefault(str(ann["image_id"]), []).append([*box, int(ann["category_id"])])
    return out


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else None


def detections_document(
    ground_truth: Mapping[str, Any],
    categories: Mapping[int, str],
    boxes: Mapping[str, Mapping[str, list[list[float]]]],
    baseline: str,
) -> dict[str, Any]:
    """The content of ``detections.json`` (every ``thumbnail`` None: see :func:`detection_gallery`).

    Args:
      ground_truth: the COCO ground truth of the eval split (its ``images`` are listed).
      categories: category id -> name.
      boxes: variant -> :func:`compact_detections` of its detections.
      baseline: the float reference variant ("" when none: every difference is 0.0).
    """
    variants = list(boxes)
    compared, ordering = compared_variants(variants, baseline)
    truth = _ground_truth_boxes(ground_truth)
    images = []
    for image in ground_truth.get("images") or []:
        key = str(image["id"])
        difference = {
            v: round(box_difference(boxes[v].get(key, []), boxes[baseline].get(key, [])), 4)
            if baseline
            else 0.0
            for v in compared
        }
        images.append(
            {
                "id": image["id"],
                "file_name": str(image.get("file_name") or ""),
                "width": _optional_int(image.get("width")),
                "height": _optional_int(image.get("height")),
                "thumbnail": None,
                "ground_truth": truth.get(key, []),
                "difference": difference,
            }
        )
    images.sort(key=lambda image: _gallery_order(image, ordering))
    return {
        "version": 1,
        "score_floor": SCORE_FLOOR,
        "diff_threshold": DIFF_THRESHOLD,
        "baseline": baseline,
        "categories": [{"id": int(k), "name": str(v)} for k, v in sorted(categories.items())],
        "images": images,
        "detections": {
            v: {str(i["id"]): boxes[v].get(str(i["id"]), []) for i in images} for v in variants
        },
    }


# --- thumbnails ---------------------------------------------------------------------------


class ImageError(ValueError):
    """Encoded bytes that are no decodable image."""


def make_thumbnail(encoded: bytes, max_side: int = THUMBNAIL_SIDE) -> tuple[Image.Image, int]:
    """An RGB image of at most ``max_side`` px per side (aspect kept, never upscaled).

    JPEGs are decoded at a reduced scale where possible (``draft``), so a
    large photo never sits in memory at full size. EXIF orientation is not
    applied: the boxes are in the pixels the detector saw
    (``tf.io.decode_image`` ignores it too).

    Returns:
      (the thumbnail, the original image's width in pixels).

    Raises:
      ImageError: the bytes are not an image PIL can decode.
    """
    try:
        with Image.open(io.BytesIO(encoded)) as opened:
            width = opened.width
            opened.draft("RGB", (max_side, max_side))  # JPEG only: decode at 1/2..1/8 scale
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"not a decodable image ({exc})") from None
    image.thumbnail((max_side, max_side))
    return image, width


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """A copy of ``image`` fitting ``max_side`` (never upscaled)."""
    small = image.copy()
    small.thumbnail((max_side, max_side))
    return small


def jpeg_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` as RGB JPEG bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def data_uri(image: Image.Image) -> str:
    """``data:image/jpeg;base64,...`` of ``image`` (for a self-contained HTML page)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(image)).decode("ascii")


def box_colour(category_id: int) -> tuple[int, int, int]:
    """The outline colour of a category's boxes."""
    return BOX_COLOURS[int(category_id) % len(BOX_COLOURS)]


def draw_boxes(
    image: Image.Image, boxes: Sequence[Sequence[float]], scale: float, width: int = 2
) -> Image.Image:
    """A copy of ``image`` with the outlines of ``boxes`` (``[x, y, w, h, ..., category_id]``
    in original pixels; ``scale`` = image width / original width)."""
    drawn = image.copy()
    pen = ImageDraw.Draw(drawn)
    for box in boxes:
        x, y, w, h = (float(v) * scale for v in box[:4])
        pen.rectangle([x, y, x + max(w - 1, 0), y + max(h - 1, 0)],
                      outline=box_colour(int(box[-1])), width=width)  # fmt: skip
    return drawn


def thumbnail_name(key: Any) -> str:
    """``<key>.jpg`` with every character other than letters, digits, ``.``, ``-``, ``_``
    replaced by ``_`` (so an image id never escapes the gallery folder)."""
    return re.sub(r"[^\w.-]", "_", str(key)) + ".jpg"


@dataclass(frozen=True)
class ReportImage:
    """A small copy of an image for report.html.

    Attributes:
      image: RGB, longest side <= :data:`REPORT_SIDE`.
      scale: its width / the original image's width (to draw original-pixel boxes).
    """

    image: Image.Image
    scale: float


def write_thumbnail(
    key: Any, encoded: bytes, output_dir: str, keep: bool = False
) -> tuple[str, ReportImage | None]:
    """Write ``gallery/<key>.jpg`` (the ``gallery`` folder must exist).

    Returns:
      (its path relative to ``output_dir``, a :class:`ReportImage` when ``keep``).

    Raises:
      ImageError: the bytes do not decode.
      OSError: the thumbnail cannot be written.
    """
    thumb, original_width = make_thumbnail(encoded)
    relative = f"{GALLERY_DIR}/{thumbnail_name(key)}"
    fileio.write_bytes(fileio.join(output_dir, relative), jpeg_bytes(thumb))
    if not keep:
        return relative, None
    small = shrink(thumb, REPORT_SIDE)
    return relative, ReportImage(small, small.width / max(original_width, 1))


def write_thumbnails(
    images: Iterable[tuple[Any, bytes]],
    wanted: Collection[Any],
    output_dir: str,
    keep: Collection[Any] = (),
) -> tuple[dict[Any, str], dict[Any, ReportImage]]:
    """Write ``gallery/<key>.jpg`` for the images whose key is in ``wanted``.

    Reads ``images`` (``(key, encoded bytes)``, lazily) until every wanted key
    was seen, decoding one image at a time. An image that does not decode is
    logged and gets no thumbnail.

    Returns:
      (key -> the thumbnail's path relative to ``output_dir``, key ->
      :class:`ReportImage` for the keys of ``keep`` that were written).

    Raises:
      OSError: a thumbnail cannot be written.
    """
    left = set(wanted)
    written: dict[Any, str] = {}
    kept: dict[Any, ReportImage] = {}
    if left:
        fileio.makedirs(fileio.join(output_dir, GALLERY_DIR))
    stream = iter(images)
    while left:
        key, encoded = next(stream, (None, None))
        if encoded is None:
            break
        if key not in left:
            continue
        left.discard(key)
        try:
            written[key], small = write_thumbnail(key, encoded, output_dir, key in keep)
        except ImageError as exc:
            LOG.warning("no thumbnail of image %s: %s", key, exc)
            continue
        if small is not None:
            kept[key] = small
    if left:
        LOG.warning("%d gallery image(s) not found among the eval images", len(left))
    return written, kept


def figure_html(image: Image.Image, alt: str, caption: str = "") -> str:
    """An inline ``<figure>`` of ``image`` (JPEG data URI) with an escaped caption."""
    tag = (
        f'<img src="{data_uri(image)}" width="{image.width}" height="{image.height}" '
        f'alt="{html.escape(alt)}">'
    )
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{tag}{text}</figure>"


# --- detection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionGallery:
    """What :func:`detection_gallery` made.

    Attributes:
      document: the content of ``detections.json``.
      report_html: the report.html section of the most different images ("" when none).
      thumbnails: image id -> thumbnail path relative to the output folder.
    """

    document: dict[str, Any]
    report_html: str
    thumbnails: dict[Any, str]


def detection_gallery(
    ground_truth: Mapping[str, Any],
    categories: Mapping[int, str],
    boxes: Mapping[str, Mapping[str, list[list[float]]]],
    baseline: str,
    images: Iterable[tuple[Any, bytes]],
    output_dir: str,
) -> DetectionGallery:
    """Build ``detections.json``'s content, write the thumbnails, render the report section.

    Args: as :func:`detections_document`, plus ``images``: ``(image id,
    encoded bytes)`` of the eval images (read lazily, until the gallery's
    images were seen) and ``output_dir``: the evaluation folder.

    Raises:
      OSError: a thumbnail cannot be written.
    """
    document = detections_document(ground_truth, categories, boxes, baseline)
    order = [image["id"] for image in document["images"]]
    top = order[:REPORT_IMAGES]
    written, kept = write_thumbnails(images, order[:GALLERY_IMAGES], output_dir, keep=top)
    for image in document["images"]:
        image["thumbnail"] = written.get(image["id"])
    _, ordering = compared_variants(list(boxes), baseline)
    section = detection_report_html(document, kept, ordering)
    return DetectionGallery(document, section, written)


def detection_report_html(
    document: Mapping[str, Any], kept: Mapping[Any, ReportImage], ordering: Sequence[str]
) -> str:
    """The report section: one row per kept image (gallery order), one drawn thumbnail
    for the baseline and each variant of ``ordering`` (boxes with score >= the
    difference threshold). "" when no image was kept."""
    baseline = document["baseline"]
    columns = ([baseline] if baseline else []) + list(ordering)
    rows = [
        _detection_row(image, kept[image["id"]], document["detections"], columns)
        for image in document["images"]
        if image["id"] in kept
    ]
    if not rows:
        return ""
    if baseline:
        order = f"most different from {baseline} first ({', '.join(ordering)})"
    else:
        order = "in image id order (no float baseline to compare with)"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["image, difference", *columns])
    intro = (
        f"Boxes with score &gt;= {DIFF_THRESHOLD:g}, {html.escape(order)}. Difference = "
        f"1 - matched / max(boxes), matched: same class and IoU &gt;= {MATCH_IOU:g}. "
        f"Every image: {DETECTIONS_FILE}, {GALLERY_DIR}/."
    )
    return (
        f"<h2>Most different images</h2>\n<p>{intro}</p>\n"
        f'<table class="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )


def _detection_row(
    image: Mapping[str, Any],
    small: ReportImage,
    detections: Mapping[str, Mapping[str, list[list[float]]]],
    columns: Sequence[str],
) -> str:
    key = str(image["id"])
    diffs = ", ".join(f"{v} {d:.2f}" for v, d in image["difference"].items())
    cells = [f"<td>{html.escape(image['file_name'] or key)}<br>{html.escape(diffs)}</td>"]
    for variant in columns:
        shown = [b for b in detections[variant].get(key, []) if b[4] >= DIFF_THRESHOLD]
        drawn = draw_boxes(small.image, shown, small.scale)
        caption = f"{variant}: {len(shown)} box{'' if len(shown) == 1 else 'es'}"
        cells.append(f"<td>{figure_html(drawn, f'{variant}, image {key}', caption)}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


# --- classification -------------------------------------------------------------------------


def top_predictions(probabilities: Any, ranked_by: Any = None) -> list[list[float]]:
    """``[[predicted index, its probability rounded to 3 decimals]]`` per row of ``[N, C]``
    probabilities. The prediction is the ``argmax`` (ties: the lowest index) of
    ``ranked_by`` (e.g. the logits the metrics were computed on), by default of the
    probabilities themselves."""
    probabilities = np.asarray(probabilities, np.float64)
    ranked = probabilities if ranked_by is None else np.asarray(ranked_by, np.float64)
    best = np.argmax(ranked, axis=1)
    return [[int(b), round(float(probabilities[i, b]), 3)] for i, b in enumerate(best)]


def misclassified_order(
    labels: Sequence[int], predictions: Mapping[str, Sequence[Sequence[float]]]
) -> list[int]:
    """Indices of the images some variant misclassifies, the most-disagreed first
    (most variants wrong; ties by index)."""
    wrong = [
        sum(int(p[i][0]) != label for p in predictions.values()) for i, label in enumerate(labels)
    ]
    return sorted((i for i, n in enumerate(wrong) if n), key=lambda i: (-wrong[i], i))


def predictions_document(
    classes: Sequence[str],
    baseline: str,
    images: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, Sequence[Sequence[float]]],
) -> dict[str, Any]:
    """The content of ``predictions.json``.

    Args:
      classes: class names in model order (index = class id - 1).
      baseline: the float reference variant ("" when none).
      images: ``{"index", "file_name", "label" (0-based), "thumbnail"}`` in eval order.
      predictions: variant -> :func:`top_predictions`, aligned with ``images``.

    Raises:
      ValueError: a variant's predictions are not one per image.
    """
    for variant, rows in predictions.items():
        if len(rows) != len(images):
            raise ValueError(f"{variant}: {len(rows)} predictions for {len(images)} images")
    return {
        "version": 1,
        "classes": list(classes),
        "baseline": baseline,
        "images": [dict(image) for image in images],
        "predictions": {v: [list(p) for p in rows] for v, rows in predictions.items()},
    }


def classification_report_html(
    document: Mapping[str, Any], kept: Mapping[int, ReportImage], order: Sequence[int]
) -> str:
    """The report section: the kept misclassified images (in ``order``), their true class
    and each variant's prediction. "" when no image was kept."""
    classes = document["classes"]
    variants = list(document["predictions"])
    rows = []
    for index in order:
        if index not in kept:
            continue
        image = document["images"][index]
        label = classes[image["label"]]
        name = image["file_name"] or f"image {index}"
        cells = [
            f"<td>{figure_html(kept[index].image, name, name)}</td>",
            f"<td>{html.escape(label)}</td>",
        ]
        for variant in variants:
            predicted, probability = document["predictions"][variant][index]
            mark = "" if int(predicted) == image["label"] else " \u2717"
            text = f"{classes[int(predicted)]} ({probability:.2f}){mark}"
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["image", "true class", *variants])
    return (
        "<h2>Misclassified images</h2>\n"
        "<p>Images some variant gets wrong, the most-disagreed first: each variant's "
        f"predicted class (probability; \u2717 = wrong). Every image: {PREDICTIONS_FILE}, "
        f"{GALLERY_DIR}/.</p>\n"
        f'<table class="gallery"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table>"
    )
