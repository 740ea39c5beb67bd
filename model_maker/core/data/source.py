"""The common typed record every reader yields, and the issues found while ingesting."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SourceBox:
    """One annotated box as the source gives it.

    Attributes:
      xmin: left edge in pixels of the image as annotated.
      ymin: top edge in pixels.
      xmax: right edge in pixels.
      ymax: bottom edge in pixels.
      label: class name (mapped to an id by the label map).
      is_crowd: COCO iscrowd flag.
      ref: where the box comes from, for messages (e.g. "annotation id 7").
      class_id: label map id when the source already fixes it (TFRecord), else 0.
      invalid: why the box cannot be used although its corners can (a field of its
        annotation that is not finite, e.g. ``"iscrowd NaN"``); "" when it can.
    """

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: str
    is_crowd: bool = False
    ref: str = ""
    class_id: int = 0
    invalid: str = ""


@dataclass(frozen=True)
class SourceImage:
    """One image and its annotations, before the image is read.

    Attributes:
      image_id: integer id, unique in the dataset; the records' ``image/source_id``
        and the COCO ground truth use it.
      file_name: name relative to the image folder (hashed for the split).
      path: file to read the pixels from ("" when ``encoded`` holds them).
      origin: annotation file and record, named in messages.
      boxes: annotated boxes (empty for a negative or a classification image).
      width: width declared by the annotation (0 when unknown).
      height: height declared by the annotation (0 when unknown).
      split: split fixed by a split file ("" lets the hash decide).
      class_label: image-level class (folder and csv formats), "" for detection.
      encoded: image bytes when they come from a record instead of a file.
      root: the dataset folder ``file_name`` must stay inside ("" for no check: the
        record and csv formats, whose paths are the user's own list).
    """

    image_id: int
    file_name: str
    path: str
    origin: str
    boxes: tuple[SourceBox, ...] = ()
    width: int = 0
    height: int = 0
    split: str = ""
    class_label: str = ""
    encoded: bytes = field(default=b"", repr=False)
    root: str = ""


# Issue kinds: what was repaired or skipped. Every kind below is an error under --strict,
# except the ones in NOT_STRICT (they follow an explicit setting, not a defect of the data).
ISSUE_KINDS = {
    "missing_image": "image file not found; image skipped",
    "unreadable_image": "truncated or non-image file; image skipped",
    "invalid_file_name": "file name that is not valid UTF-8; written with its bytes as \\xNN",
    "outside_input": (
        "image file outside the dataset (absolute path, '..' or a symlink out); image skipped "
        "(--allow-outside-input reads it)"
    ),
    "duplicate_file_name": "the same image file under several image ids; each one written",
    "recovered_truncated": "truncated image: the part that decodes kept, the rest filled gray",
    "reencoded_damaged": (
        "image whose bytes TensorFlow's decoder refuses (a PNG checksum, a JPEG without its "
        "end marker) re-encoded from the pixels that decode"
    ),
    "converted_grayscale": "grayscale image converted to RGB",
    "converted_rgba": "image with alpha converted to RGB (alpha dropped)",
    "converted_cmyk": "CMYK image converted to RGB",
    "converted_palette": "palette image converted to RGB",
    "converted_16bit": "16-bit image converted to 8-bit RGB",
    "converted_format": "image format other than JPEG/PNG re-encoded as PNG",
    "exif_rotated": "EXIF orientation applied to the pixels",
    "exif_invalid": "EXIF orientation outside 1..8 ignored",
    "size_mismatch": "annotated size differs from the image; the image's size is used",
    "box_clipped": "box outside the image clipped to it",
    "box_dropped": "box with zero or negative area dropped",
    "box_nonfinite": "box with a non-finite (NaN or infinite) number dropped",
    "negative_dropped": "image without boxes dropped (keep_negatives is off)",
    "invalid_record": "record that breaks the contract; record skipped",
    "invalid_row": "CSV row that cannot be used; row skipped",
    "error": "input that cannot be ingested",
}
NOT_STRICT = frozenset({"negative_dropped"})


@dataclass(frozen=True)
class Issue:
    """A repaired or skipped item, reported in stats.json.

    Attributes:
      kind: one of ``ISSUE_KINDS``.
      where: file and record concerned.
      detail: what exactly was found.
      split: split of the image ("" when not assigned).
    """

    kind: str
    where: str
    detail: str = ""
    split: str = ""

    @property
    def fatal(self) -> bool:
        return self.kind == "error"

    def message(self) -> str:
        if self.fatal:
            return self.detail  # errors carry a complete message naming the file
        text = f"{self.where}: {ISSUE_KINDS.get(self.kind, self.kind)}"
        return f"{text} ({self.detail})" if self.detail else text
