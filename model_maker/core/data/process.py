"""One image through ingestion: read, repair, check boxes, encode; plain Python (Beam calls it).

An image whose file lies outside its dataset folder is skipped (``outside_input``)
unless ``allow_outside_input`` is set; a file name that is not UTF-8 is written with
its undecodable bytes as ``\\xNN`` (``invalid_file_name``). Boxes with a NaN or
infinite coordinate, or a non-finite number elsewhere in their annotation, are
dropped (counted ``box_nonfinite``),
the others are clipped to the image (counted) and dropped when their area is
zero or negative (counted); every conversion of the pixels is counted too. The
result carries the record, the COCO ground truth entries of the image and the
issues found, so the Beam pipeline only routes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model_maker.core.data.images import ImageReadError, load_image
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.paths import outside_reason, printable_name
from model_maker.core.data.records import DetectionExample, encode_example
from model_maker.core.data.source import Issue, SourceImage
from model_maker.core.data.split import hash_split

if TYPE_CHECKING:
    from model_maker.core.data.options import IngestOptions


@dataclass(frozen=True)
class ImageSummary:
    """What the ground truth and stats need to know about one source image.

    Attributes:
      image_id: id of the image (records' ``image/source_id``).
      split: split of the image ("" when it was skipped before one was chosen).
      image: COCO ``images`` entry, or None when no record was written.
      annotations: COCO ``annotations`` entries without ``id`` (numbered when written).
      issues: repairs and skips.
      label_texts: (class id, class name) pairs seen in the record.
      class_id: image-level class (classification), 0 for detection.
    """

    image_id: int
    split: str
    image: dict | None
    annotations: tuple[dict, ...] = ()
    issues: tuple[Issue, ...] = ()
    label_texts: tuple[tuple[int, str], ...] = ()
    class_id: int = 0


@dataclass(frozen=True)
class ProcessSettings:
    """The options of ``IngestOptions`` that matter per image.

    Attributes:
      split_ratios: hash split ratios for images without a fixed split.
      keep_negatives: keep images without boxes.
      allow_outside_input: read image files outside the dataset folder (absolute
        names, ``..``, symlinks out) instead of skipping them.
    """

    split_ratios: Mapping[str, float]
    keep_negatives: bool = True
    allow_outside_input: bool = False

    @classmethod
    def of(cls, options: IngestOptions) -> ProcessSettings:
        """The per-image part of ``options``."""
        return cls(dict(options.split_ratios), options.keep_negatives, options.allow_outside_input)


def choose_split(src: SourceImage, ratios: Mapping[str, float]) -> str:
    """The fixed split of ``src``, or the hash split of its (printable) file name."""
    return src.split or hash_split(printable_name(src.file_name), ratios)


def _has_float32_area(xmin: float, ymin: float, xmax: float, ymax: float) -> bool:
    """Whether the normalised box keeps a positive width and height in float32."""
    lo = np.float32([xmin, ymin])
    hi = np.float32([xmax, ymax])
    return bool(np.all(lo < hi))


def process_image(
    src: SourceImage, label_map: LabelMap, settings: ProcessSettings
) -> tuple[bytes | None, ImageSummary]:
    """Turn ``src`` into a serialised record (None when skipped) and its summary."""
    split = choose_split(src, settings.split_ratios)
    issues: list[Issue] = []
    origin = printable_name(src.origin)

    def issue(kind: str, detail: str = "", where: str = "") -> None:
        issues.append(Issue(kind, printable_name(where) if where else origin, detail, split))

    if not settings.allow_outside_input:
        reason = outside_reason(src.root, src.file_name, src.path)
        if reason:
            issue("outside_input", reason)
            return None, ImageSummary(src.image_id, split, None, (), tuple(issues))
    file_name = printable_name(src.file_name)
    if file_name != src.file_name:
        issue("invalid_file_name", f"written as {file_name!r}")
    try:
        loaded = load_image(src.path, src.encoded, (src.width, src.height))
    except ImageReadError as exc:
        issue(exc.kind, exc.detail)
        return None, ImageSummary(src.image_id, split, None, (), tuple(issues))
    for kind, detail in loaded.repairs:
        issue(kind, detail)
    width, height = loaded.width, loaded.height
    if src.width and src.height and (src.width, src.height) != (width, height):
        issue("size_mismatch", f"annotated {src.width}x{src.height}, image {width}x{height}")

    ids = label_map.name_to_id()
    boxes, labels, texts, areas, crowd, anns = [], [], [], [], [], []
    for box in src.boxes:
        where = f"{src.origin} {box.ref}".rstrip()
        corners = (box.xmin, box.ymin, box.xmax, box.ymax)
        if not all(math.isfinite(v) for v in corners):
            # NaN compares false with everything, so the checks below would keep it.
            shown = ", ".join(f"{v:g}" for v in corners)
            issue("box_nonfinite", f"(xmin, ymin, xmax, ymax) = ({shown})", where)
            continue
        if box.invalid:
            issue("box_nonfinite", box.invalid, where)
            continue
        if box.xmax <= box.xmin or box.ymax <= box.ymin:
            issue(
                "box_dropped",
                f"({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}) has no area",
                where,
            )
            continue
        x0, y0 = min(max(box.xmin, 0.0), width), min(max(box.ymin, 0.0), height)
        x1, y1 = min(max(box.xmax, 0.0), width), min(max(box.ymax, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            issue(
                "box_dropped",
                f"({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}) lies outside the "
                f"{width}x{height} image",
                where,
            )
            continue
        if not _has_float32_area(x0 / width, y0 / height, x1 / width, y1 / height):
            # Records store float32: narrower than its step, the box would have no area.
            issue(
                "box_dropped",
                f"({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}) is narrower than "
                "float32 resolves once normalised",
                where,
            )
            continue
        if (x0, y0, x1, y1) != (box.xmin, box.ymin, box.xmax, box.ymax):
            issue(
                "box_clipped",
                f"({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, {box.ymax:g}) -> "
                f"({x0:g}, {y0:g}, {x1:g}, {y1:g}) in {width}x{height}",
                where,
            )
        class_id = box.class_id or ids[box.label]
        text = label_map.name_of(class_id) if box.class_id else box.label
        area = (x1 - x0) * (y1 - y0)
        boxes.append((y0 / height, x0 / width, y1 / height, x1 / width))
        labels.append(class_id)
        texts.append(text)
        areas.append(area)
        crowd.append(int(box.is_crowd))
        anns.append(
            {
                "image_id": src.image_id,
                "category_id": class_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": area,
                "iscrowd": int(box.is_crowd),
            }
        )

    class_id = ids[src.class_label] if src.class_label else 0
    if not boxes and not src.class_label and not settings.keep_negatives:
        detail = f"{len(src.boxes)} box(es) dropped" if src.boxes else "no boxes"
        issue("negative_dropped", detail)
        return None, ImageSummary(src.image_id, split, None, (), tuple(issues))

    record = encode_example(
        DetectionExample(
            encoded=loaded.encoded,
            format=loaded.format,
            height=height,
            width=width,
            source_id=str(src.image_id),
            filename=file_name,
            boxes=tuple(boxes),
            labels=tuple(labels),
            texts=tuple(texts),
            areas=tuple(areas),
            is_crowd=tuple(crowd),
            class_label=class_id,
            class_text=src.class_label,
        )
    )
    image = {"id": src.image_id, "file_name": file_name, "width": width, "height": height}
    if class_id:
        image["class_id"] = class_id
    pairs = tuple(sorted(set(zip(labels, texts, strict=True))))
    summary = ImageSummary(src.image_id, split, image, tuple(anns), tuple(issues), pairs, class_id)
    return record, summary


def summarize_record(example: DetectionExample, image_id: int, split: str) -> ImageSummary:
    """The summary of a validated record that is written unchanged."""
    anns = []
    for (ymin, xmin, ymax, xmax), label, area, crowd in zip(
        example.boxes, example.labels, example.areas, example.is_crowd, strict=True
    ):
        x0, y0 = xmin * example.width, ymin * example.height
        w, h = (xmax - xmin) * example.width, (ymax - ymin) * example.height
        anns.append(
            {
                "image_id": image_id,
                "category_id": label,
                "bbox": [x0, y0, w, h],
                "area": area,
                "iscrowd": int(crowd),
            }
        )
    image = {
        "id": image_id,
        "file_name": example.filename or example.source_id,
        "width": example.width,
        "height": example.height,
    }
    if example.class_label:
        image["class_id"] = example.class_label
    pairs = tuple(sorted(set(zip(example.labels, example.texts, strict=True))))
    if example.class_label:
        pairs = tuple(sorted({*pairs, (example.class_label, example.class_text)}))
    return ImageSummary(image_id, split, image, tuple(anns), (), pairs, example.class_label)
