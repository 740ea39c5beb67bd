"""Classification CSV: one ``path,label[,split]`` row per image (the ``csv`` format).

The shape of Model Maker's ``from_csv`` loaders for classification::

    path,label,split              <- optional header: path,label or path,label,split
    images/ant_1.jpg,ants,train
    images/bee_7.jpg,bees,eval
    /data/more/bee_9.jpg,bees     <- no split: the hash split (split_ratios) decides

Paths are relative to the CSV file's folder, or absolute (a URI too). A row
naming a split goes to that split; a row without one (two columns, or an empty
third) is hash-split by its path as written. Without a header a row may have 2
or 3 columns; with one, exactly the header's count.

Rows that cannot be used are counted ``invalid_row`` issues naming
``file:line`` (wrong column count, empty path or label, a split that is no
valid name, an image listed a second time), never dropped silently. Missing or
unreadable image files are found when the image is read (``missing_image`` /
``unreadable_image``, naming the CSV line too). A file without any row, an
unknown header or a CSV the ``csv`` module cannot parse is a ``DataError``.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from dataclasses import dataclass

from model_maker.core.data import fileio
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.source import Issue, SourceImage
from model_maker.core.errors import DataError

#: Accepted header rows (compared case-insensitively, cells stripped).
HEADERS = (("path", "label"), ("path", "label", "split"))
#: First cells that mark a first row as a header (then it must be one of ``HEADERS``).
HEADER_WORDS = frozenset(
    {"path", "image", "image_path", "file", "filename", "file_name", "filepath", "uri", "url"}
)
COLUMNS = "path,label[,split]"


@dataclass(frozen=True)
class CsvIndex:
    """The images of a classification CSV, before any is read.

    Attributes:
      label_map: the labels of the usable rows, sorted, ids 1..K.
      images: one per usable row, ids 1..N in row order; ``split`` is the row's
        split ("" for the hash split).
      issues: ``invalid_row`` issues of the rows left out.
      splits: split names given in the split column, in order of first use.
      hashed: how many usable rows the hash split places.
    """

    label_map: LabelMap
    images: tuple[SourceImage, ...]
    issues: tuple[Issue, ...]
    splits: tuple[str, ...]
    hashed: int


def _valid_name(value: str) -> bool:
    # The rule of split names everywhere (settings.check_name).
    return all(c.isalnum() or c in "_-." for c in value) and value not in (".", "..")


def _folder_of(path: str) -> str:
    if fileio.is_remote(path):
        return posixpath.dirname(path)
    return os.path.dirname(os.path.abspath(path))


def _resolve(base: str, path: str) -> str:
    """``path`` as read: URIs as given, local paths under ``base`` unless absolute, normalised
    (so that ``a.jpg`` and ``./a.jpg`` are the same image)."""
    if fileio.is_remote(path):
        return path
    if fileio.is_remote(base):
        return fileio.join(base, path)
    return os.path.normpath(os.path.join(base, path))


def _row_problem(cells: list[str], columns: int | None) -> str:
    """Why a row cannot be used, or ""."""
    if (columns and len(cells) != columns) or not 2 <= len(cells) <= 3:
        expected = f"{columns}, as the header" if columns else "2 or 3"
        return f"{len(cells)} column(s), expected {expected} ({COLUMNS})"
    image, label = cells[0], cells[1]
    split = cells[2] if len(cells) == 3 else ""
    if split and not _valid_name(split):
        return f"split {split!r} is not a valid name (letters, digits, '_', '-', '.')"
    if not image:
        return "empty path"
    if not label:
        return f"empty label for {image}"
    return ""


def _read_rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of every non-blank row."""
    try:
        text = fileio.read_text(path, encoding="utf-8-sig")  # a spreadsheet's BOM is no data
    except FileNotFoundError:
        raise DataError(f"{path}: CSV file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; the csv format reads one CSV file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # strict: an unclosed quote would otherwise swallow the rest of the file into one cell
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if len(cells) <= 1 and not any(cells):
                continue  # a blank line holds no row
            rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
    return rows


def read_csv(path: str | os.PathLike) -> CsvIndex:
    """Read a ``path,label[,split]`` CSV.

    Raises:
      DataError: no such file, no row, an unknown header, no usable row, or
        text the ``csv`` module cannot parse; each names the file (and line).
    """
    path = os.fspath(path)
    rows = _read_rows(path)
    if not rows:
        raise DataError(f"{path}: empty CSV (expected rows {COLUMNS})")
    columns: int | None = None
    first_line, first = rows[0]
    if tuple(c.lower() for c in first) in HEADERS:
        columns = len(first)
        rows = rows[1:]
        if not rows:
            raise DataError(f"{path}: empty CSV (a header, no rows {COLUMNS})")
    elif first and first[0].lower() in HEADER_WORDS:
        raise DataError(
            f"{path}:{first_line}: header {','.join(first)!r} not understood; "
            f"the columns are {COLUMNS} (header optional)"
        )

    base = _folder_of(path)
    images: list[SourceImage] = []
    issues: list[Issue] = []
    splits: list[str] = []
    first_row: dict[str, int] = {}
    hashed = 0
    for line, cells in rows:
        where = f"{path}:{line}"
        split = cells[2] if len(cells) == 3 else ""
        problem = _row_problem(cells, columns)
        resolved = "" if problem else _resolve(base, cells[0])
        if resolved in first_row:
            problem = f"{cells[0]} is listed again (first on line {first_row[resolved]})"
        if problem:
            issues.append(Issue("invalid_row", where, problem, split if _valid_name(split) else ""))
            continue
        first_row[resolved] = line
        if split and split not in splits:
            splits.append(split)
        hashed += not split
        images.append(
            SourceImage(
                image_id=len(images) + 1,
                file_name=cells[0],
                path=resolved,
                origin=f"{where} ({cells[0]})",
                split=split,
                class_label=cells[1],
            )
        )
    if not images:
        raise DataError(
            f"{path}: none of the {len(rows)} row(s) is usable; first: {issues[0].message()}"
        )
    label_map = LabelMap.from_names(img.class_label for img in images)
    return CsvIndex(label_map, tuple(images), tuple(issues), tuple(splits), hashed)
