"""Pascal VOC reader: a dataset folder with ``annotations/*.xml`` and ``images/``.

``list_voc`` only lists the XML files (ids are their 1-based position in sorted
order, so they are stable); ``parse_voc`` parses one file and runs inside the
Beam pipeline. A split file lists one annotation id (XML file stem) per line,
as VOC's ``ImageSets/Main/<split>.txt`` does.
"""

from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from model_maker.core.data import fileio
from model_maker.core.data.source import SourceBox, SourceImage
from model_maker.core.errors import DataError

LOG = logging.getLogger("qatflow.ingest")
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class VocItem:
    """One annotation file to parse.

    Attributes:
      image_id: 1-based position of the file in sorted order.
      xml_path: the annotation file.
      image_dir: folder holding the images.
      split: split from a split file ("" lets the hash decide).
    """

    image_id: int
    xml_path: str
    image_dir: str
    split: str = ""


def _folder(dataset_dir: str, *names: str) -> str:
    for name in names:
        path = fileio.join(dataset_dir, name)
        if fileio.isdir(path):
            return path
    raise DataError(f"{dataset_dir}: no {names[0]}/ folder (expected a VOC dataset folder)")


def _read_list(path: str) -> list[str]:
    try:
        lines = fileio.read_text(path).split("\n")
    except OSError as exc:
        raise DataError(f"{path}: cannot read split file ({exc.strerror})") from None
    # VOC class lists carry a second column (1/-1); the first is the id.
    return [line.split()[0] for line in lines if line.strip()]


def list_voc(dataset_dir: str | os.PathLike, split_files: Mapping[str, str] | None = None):
    """The annotation files of ``dataset_dir`` as ``VocItem`` (sorted by file name)."""
    dataset_dir = os.fspath(dataset_dir)
    if not fileio.isdir(dataset_dir):
        raise DataError(f"{dataset_dir}: VOC dataset folder not found")
    ann_dir = _folder(dataset_dir, ANNOTATIONS_DIR, "Annotations")
    image_dir = _folder(dataset_dir, IMAGES_DIR, "JPEGImages")
    stems = sorted(f[:-4] for f in fileio.listdir(ann_dir) if f.lower().endswith(".xml"))
    if not stems:
        raise DataError(f"{ann_dir}: no .xml annotation files")
    ids = {stem: i for i, stem in enumerate(stems, start=1)}
    split_of: dict[str, str] = {}
    for split, file in (split_files or {}).items():
        for stem in _read_list(file):
            if stem not in ids:
                raise DataError(f"{file}: id {stem!r} has no {ann_dir}/{stem}.xml")
            if stem in split_of:
                raise DataError(f"{file}: id {stem!r} is also in split {split_of[stem]!r}")
            split_of[stem] = split
    items = []
    for stem in stems:
        if split_files and stem not in split_of:
            continue  # not in any listed split: the split files choose the subset
        items.append(
            VocItem(
                ids[stem], fileio.join(ann_dir, stem + ".xml"), image_dir, split_of.get(stem, "")
            )
        )
    if len(items) < len(stems):
        LOG.warning(
            "%d of %d annotation files are in no split file and are left out",
            len(stems) - len(items),
            len(stems),
        )
    return items


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: <{tag}> must be a number, got {text!r}") from None


def _pixels(size: ET.Element, tag: str, where: str) -> int:
    """``<size><width>``/``<height>``: a finite whole number of pixels, 0 or more
    (``float`` reads ``nan``, ``inf`` and ``1e400`` too; they are errors here)."""
    value = _number(size, tag, where)
    if math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    raise DataError(
        f"{where}: <{tag}> must be a whole number of pixels (0 or more), got {size.findtext(tag)!r}"
    )


def parse_voc(item: VocItem) -> SourceImage:
    """Parse one VOC XML file.

    Box coordinates are read as ``float`` does, so ``nan`` and ``inf`` reach
    ``process_image``, which drops such boxes as ``box_nonfinite`` issues.

    Raises:
      DataError: malformed XML (file:line:column) or a missing/invalid field
        (naming the file and the object); an image size that is not a finite
        whole number of pixels (naming the file and the field).
    """
    path = item.xml_path
    try:
        root = ET.fromstring(fileio.read_bytes(path))
    except ET.ParseError as exc:
        line, column = exc.position
        raise DataError(f"{path}:{line}:{column + 1}: malformed XML: {exc.msg}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    file_name = (root.findtext("filename") or "").strip()
    if not file_name:
        raise DataError(f"{path}: missing <filename>")
    width = height = 0
    size = root.find("size")
    if size is not None:
        width = _pixels(size, "width", f"{path}: <size>")
        height = _pixels(size, "height", f"{path}: <size>")
    boxes = []
    for index, obj in enumerate(root.findall("object")):
        where = f"{path}: object {index}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(f"{where}: missing <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataError(f"{where} ({name}): missing <bndbox>")
        coords = [
            _number(bndbox, tag, f"{where} ({name})") for tag in ("xmin", "ymin", "xmax", "ymax")
        ]
        boxes.append(SourceBox(*coords, label=name, ref=f"object {index}"))
    return SourceImage(
        image_id=item.image_id,
        file_name=file_name,
        path=fileio.join(item.image_dir, file_name),
        origin=f"{path} ({file_name})",
        boxes=tuple(boxes),
        width=width,
        height=height,
        split=item.split,
        root=item.image_dir,
    )
