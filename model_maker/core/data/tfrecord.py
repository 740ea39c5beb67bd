"""Existing TFRecords in the TF Object Detection API layout: found, validated, passed through.

A record is validated (contract keys present, boxes normalised and ordered,
labels >= 1, the image decodes) and by default written unchanged; with
``rewrite`` it is decoded into a ``SourceImage`` and goes through the same
image and box repairs as the other formats.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping

from model_maker.core.data import fileio
from model_maker.core.data.images import ImageReadError, load_image
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.records import DetectionExample, RecordError, decode_example
from model_maker.core.data.source import SourceBox, SourceImage
from model_maker.core.errors import DataError

LABEL_MAP_FILES = ("label_map.json", "label_map.pbtxt")
_SKIP_NAMES = frozenset({*LABEL_MAP_FILES, "stats.json"})


def find_label_map(input_dir: str) -> LabelMap | None:
    """The label map stored beside the records, if any."""
    for name in LABEL_MAP_FILES:
        path = fileio.join(input_dir, name)
        if fileio.isfile(path):
            return LabelMap.load(path)
    return None


def _is_record_file(name: str) -> bool:
    return name not in _SKIP_NAMES and not name.endswith((".json", ".txt", ".pbtxt", ".md"))


def list_record_files(
    input_dir: str | os.PathLike, split_files: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Record files per split.

    ``split_files`` maps a split to a file or glob pattern. Otherwise a TFX
    layout (``Split-<name>/``) gives the splits, and any other folder is one
    unsplit set (key "") that the hash split divides.
    """
    input_dir = os.fspath(input_dir)
    if split_files:
        out = {}
        for split, pattern in split_files.items():
            files = sorted(fileio.glob(pattern)) or sorted(
                fileio.glob(fileio.join(input_dir, pattern))
            )
            if not files:
                raise DataError(f"split {split}: no TFRecord files match {pattern}")
            out[split] = files
        return out
    if not fileio.isdir(input_dir):
        raise DataError(f"{input_dir}: TFRecord folder not found")
    split_dirs = sorted(
        d
        for d in fileio.listdir(input_dir)
        if d.startswith("Split-") and fileio.isdir(fileio.join(input_dir, d))
    )
    out = {}
    if split_dirs:
        for d in split_dirs:
            folder = fileio.join(input_dir, d)
            out[d[len("Split-") :]] = sorted(
                fileio.join(folder, f) for f in fileio.listdir(folder) if _is_record_file(f)
            )
    else:
        files = fileio.walk_files(input_dir)
        out[""] = sorted(f for f in files if _is_record_file(os.path.basename(f)))
    if not any(out.values()):
        raise DataError(f"{input_dir}: no TFRecord files")
    return out


def image_id_of(source_id: str) -> int:
    """``int(source_id)`` when it is a decimal integer, otherwise a stable 52-bit hash."""
    if source_id.isdigit():
        return int(source_id)
    return int.from_bytes(hashlib.sha256(source_id.encode()).digest()[:7], "big") >> 4


def validate_record(
    serialized: bytes, label_map: LabelMap | None, unchanged: bool = True
) -> DetectionExample:
    """Decode and check one record; ``unchanged``: it will be written as it is, so its
    image must decode as stored (a cut-off JPEG that only re-encoding saves is refused).

    Raises:
      RecordError: the record breaks the contract (message says how).
    """
    example = decode_example(serialized)
    if example.height <= 0 or example.width <= 0:
        raise RecordError(f"image size {example.width}x{example.height}")
    for index, (ymin, xmin, ymax, xmax) in enumerate(example.boxes):
        if not (0.0 <= xmin <= xmax <= 1.0 and 0.0 <= ymin <= ymax <= 1.0):
            raise RecordError(
                f"box {index} (ymin, xmin, ymax, xmax)=({ymin:g}, {xmin:g}, {ymax:g}, {xmax:g}) "
                "is not normalised and ordered"
            )
    for index, area in enumerate(example.areas):
        if not math.isfinite(area) or area < 0:
            raise RecordError(
                f"box {index}: image/object/area {area!r} is not finite or is negative"
            )
    for index, label in enumerate(example.labels):
        if label < 1:
            raise RecordError(f"box {index}: class label {label} (ids start at 1)")
        if label_map is not None and label not in [c.id for c in label_map.classes]:
            raise RecordError(f"box {index}: class label {label} not in the label map")
    try:
        loaded = load_image(data=example.encoded)
    except ImageReadError as exc:
        raise RecordError(f"image/encoded: {exc.detail}") from None
    for kind, detail in loaded.repairs:
        if unchanged and kind == "recovered_truncated":
            # Readable only once re-encoded; TensorFlow's decoder refuses the bytes as they are.
            raise RecordError(f"image/encoded is cut off ({detail}); --rewrite re-encodes it")
    if (loaded.width, loaded.height) != (example.width, example.height):
        raise RecordError(
            f"image is {loaded.width}x{loaded.height}, record says {example.width}x{example.height}"
        )
    return example


def to_source(
    example: DetectionExample, origin: str, split: str, names: Mapping[int, str]
) -> SourceImage:
    """A validated record as a ``SourceImage`` (for ``rewrite``), boxes back in pixels."""
    boxes = tuple(
        SourceBox(
            xmin * example.width,
            ymin * example.height,
            xmax * example.width,
            ymax * example.height,
            names.get(label) or text or str(label),
            bool(crowd),
            f"box {i}",
            label,
        )
        for i, ((ymin, xmin, ymax, xmax), label, text, crowd) in enumerate(
            zip(example.boxes, example.labels, example.texts, example.is_crowd, strict=True)
        )
    )
    return SourceImage(
        image_id=image_id_of(example.source_id),
        file_name=example.filename or example.source_id,
        path="",
        origin=origin,
        boxes=boxes,
        width=example.width,
        height=example.height,
        split=split,
        class_label=example.class_text,
        encoded=example.encoded,
    )
