"""COCO instances JSON reader: validated in one pass, yielding one ``SourceImage`` per image."""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass

from model_maker.core.data import fileio
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.source import SourceBox, SourceImage
from model_maker.core.errors import DataError


@dataclass(frozen=True)
class CocoIndex:
    """A parsed COCO dataset.

    Attributes:
      label_map: categories renumbered 1..K in original id order.
      images: one entry per image, boxes in pixels.
    """

    label_map: LabelMap
    images: tuple[SourceImage, ...]


def load_json(path: str) -> object:
    """``json.load`` with errors naming the file, line and column."""
    try:
        return json.loads(fileio.read_text(path))
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: invalid JSON: nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DataError(f"{path}: invalid JSON: {exc}") from None


def _record(path: str, section: str, index: int, item: object) -> str:
    ident = item.get("id") if isinstance(item, Mapping) else None
    return f"{path}: {section}[{index}]" + (f" (id {ident})" if ident is not None else "")


def _need(item: object, keys: tuple[str, ...], where: str) -> Mapping:
    if not isinstance(item, Mapping):
        raise DataError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in keys if k not in item]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    return item


def _size(info: Mapping, key: str, where: str) -> int:
    """``images[].width/height`` in pixels; 0 (or absent) means unknown.

    Python's json reads ``NaN``, ``Infinity`` and ``1e400`` (as inf); a size must
    be a finite whole number, so those, negative and fractional values are errors.
    """
    value = info.get(key) or 0
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
        raise DataError(f"{where}: {key} must be a non-negative number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise DataError(f"{where}: {key} must be a finite number of pixels, got {value!r}")
    if value != int(value):
        raise DataError(f"{where}: {key} must be a whole number of pixels, got {value!r}")
    return int(value)


def _coordinate(value: numbers.Real) -> float:
    """``float(value)``; an integer beyond the float range becomes an infinity, so that
    the box is dropped as non-finite (``box_nonfinite``) instead of raising OverflowError.
    NaN and infinities (json reads ``NaN``, ``Infinity``, ``1e400``) pass through the same way.
    """
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _known(key: object, table: Mapping) -> bool:
    """``key in table`` for any JSON value (a list or an object is no id: not known)."""
    try:
        return key in table
    except TypeError:
        return False


def _nonfinite_fields(ann: Mapping) -> str:
    """``"iscrowd nan"``-style text for each of ``iscrowd`` and ``area`` that is a
    non-finite number (or an integer beyond the float range); "" when none is.
    qatflow computes the area itself, but a NaN there marks a corrupt record."""
    found = []
    for key in ("iscrowd", "area"):
        value = ann.get(key)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(_coordinate(value)):
                found.append(
                    f"{key} {value!r}" if isinstance(value, float) else f"{key} {value:.3g}"
                )
    return ", ".join(found)


def _crowd(ann: Mapping, where: str) -> bool:
    """COCO ``iscrowd``: 0 or 1 (``false``/``true`` too); absent means 0."""
    value = ann.get("iscrowd", 0)
    if value in (0, 1) and (isinstance(value, numbers.Real)):
        return bool(value)
    raise DataError(f"{where}: iscrowd must be 0 or 1, got {value!r}")


def _categories(path: str, data: Mapping) -> dict[int, str]:
    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        where = _record(path, "categories", i, cat)
        cat = _need(cat, ("id", "name"), where)
        if not isinstance(cat["id"], int) or isinstance(cat["id"], bool):
            raise DataError(f"{where}: category id must be an integer, got {cat['id']!r}")
        if cat["id"] in categories:
            raise DataError(f"{where}: duplicate category id {cat['id']}")
        categories[cat["id"]] = str(cat["name"])
    return categories


def read_coco(
    annotations: str | os.PathLike,
    image_dir: str | os.PathLike,
    split: str = "",
    categories: Mapping[int, str] | None = None,
) -> tuple[dict[int, str], list[SourceImage]]:
    """Parse one COCO instances JSON.

    Returns the categories (original id -> name) and the images with their boxes
    (COCO ``[x, y, w, h]`` turned into pixel corners). ``categories`` from another
    split file must agree with this file's.

    Raises:
      DataError: malformed JSON (file:line:column), missing keys, duplicate image or
        category ids, an annotation of an unknown image or category, an image
        width/height that is not a finite whole number of pixels (naming the record).
        A NaN or infinite bbox number is no error here: ``process_image`` drops
        the box and counts it (``box_nonfinite``).
    """
    path = os.fspath(annotations)
    image_dir = os.fspath(image_dir)
    data = load_json(path)
    if not isinstance(data, Mapping):
        raise DataError(f"{path}: a COCO file holds an object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: key {key!r} must be a list")
    cats = _categories(path, data)
    if categories is not None and dict(categories) != cats:
        raise DataError(f"{path}: categories differ from the other split files'")

    images: dict[int, dict] = {}
    order: list[int] = []
    for i, img in enumerate(data["images"]):
        where = _record(path, "images", i, img)
        img = _need(img, ("id", "file_name"), where)
        image_id = img["id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise DataError(f"{where}: image id must be an integer, got {image_id!r}")
        if image_id in images:
            raise DataError(f"{where}: duplicate image id {image_id}")
        images[image_id] = {"info": img, "where": where, "boxes": []}
        order.append(image_id)

    for i, ann in enumerate(data["annotations"]):
        where = _record(path, "annotations", i, ann)
        ann = _need(ann, ("image_id", "category_id", "bbox"), where)
        if not _known(ann["image_id"], images):
            raise DataError(f"{where}: unknown image_id {ann['image_id']!r}")
        if not _known(ann["category_id"], cats):
            raise DataError(f"{where}: unknown category_id {ann['category_id']!r}")
        bbox = ann["bbox"]
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox)
        ):
            raise DataError(f"{where}: bbox must be [x, y, width, height] numbers, got {bbox!r}")
        x, y, w, h = (_coordinate(v) for v in bbox)
        ref = f"annotation id {ann['id']}" if "id" in ann else f"annotations[{i}]"
        invalid = _nonfinite_fields(ann)
        crowd = False if invalid else _crowd(ann, where)
        images[ann["image_id"]]["boxes"].append(
            SourceBox(x, y, x + w, y + h, cats[ann["category_id"]], crowd, ref, invalid=invalid)
        )

    out = []
    for image_id in order:
        entry = images[image_id]
        info = entry["info"]
        file_name = str(info["file_name"])
        out.append(
            SourceImage(
                image_id=image_id,
                file_name=file_name,
                path=fileio.join(image_dir, file_name),
                origin=f"{path}: image id {image_id} ({file_name})",
                boxes=tuple(entry["boxes"]),
                width=_size(info, "width", entry["where"]),
                height=_size(info, "height", entry["where"]),
                split=split,
                root=image_dir,
            )
        )
    return cats, out


def read_coco_splits(
    image_dir: str | os.PathLike,
    annotations: str | os.PathLike = "",
    split_files: Mapping[str, str] | None = None,
    image_dirs: Mapping[str, str] | None = None,
) -> CocoIndex:
    """One COCO JSON (hash-split later) or one JSON per split (``split_files``).

    With split files, ``image_dirs`` may give a split its own image folder
    (COCO 2017: train2017/, val2017/); other splits read from ``image_dir``.
    """
    image_dirs = image_dirs or {}
    if split_files:
        cats: dict[int, str] | None = None
        images: list[SourceImage] = []
        seen: dict[int, str] = {}
        for split, file in split_files.items():
            folder = image_dirs.get(split, image_dir)
            cats, part = read_coco(file, folder, split=split, categories=cats)
            for img in part:
                if img.image_id in seen:
                    raise DataError(
                        f"{file}: image id {img.image_id} is also in {seen[img.image_id]}"
                    )
                seen[img.image_id] = file
            images.extend(part)
    elif annotations:
        cats, images = read_coco(annotations, image_dir)
    else:
        raise DataError("coco: give --annotations FILE or split files")
    names = list(cats.values())
    if len(set(names)) != len(names):
        raise DataError(f"{annotations or split_files}: category names must be unique: {names}")
    return CocoIndex(LabelMap.from_source_ids(cats), tuple(images))
