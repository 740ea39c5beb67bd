"""Classification folders: ``ROOT/<class name>/<image>``, one sub-folder per class.

Two layouts:

- one class-per-folder root, split later by the hash of each file name
  (:func:`read_folders`);
- one class-per-folder root per split (``train/<class>/``, ``val/<class>/`` ...),
  named by ``split_image_dirs`` (:func:`read_split_folders`). The class list is
  the union over the splits, so every split's records use the same ids; a
  class with no images in a split is allowed and reported in ``absent``.

A root holding no images of its own whose sub-folders hold class folders is
the second layout given as the first: that fails with a message saying so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from model_maker.core.data import fileio
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.paths import is_utf8, printable_name
from model_maker.core.data.source import SourceImage
from model_maker.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Folder names suggested as the ``eval`` split in the "looks like split folders" message.
EVAL_FOLDER_NAMES = frozenset({"val", "valid", "validation", "eval", "evaluation", "dev"})


@dataclass(frozen=True)
class FolderIndex:
    """The images of class folders, before any is read.

    Attributes:
      label_map: the class names (union over the splits), sorted, ids 1..K.
      images: one per image file, ids 1..N over all splits.
      ignored: (path, split) of the files left out because their name is not an
        image's (reported, not dropped silently).
      absent: split -> classes of the label map with no image file in that
        split's folder (split layout only; empty for the hash split).
      folders: split -> the folder that split was read from (split layout only).
    """

    label_map: LabelMap
    images: tuple[SourceImage, ...]
    ignored: tuple[tuple[str, str], ...] = ()
    absent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    folders: Mapping[str, str] = field(default_factory=dict)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _subfolders(folder: str) -> list[str]:
    return sorted(d for d in fileio.listdir(folder) if fileio.isdir(fileio.join(folder, d)))


def _scan(root: str) -> dict[str, tuple[list[str], list[str]]]:
    """Class name -> (image file names, other file names), both sorted, for ``root/<class>/``."""
    found = {}
    for name in _subfolders(root):
        folder = fileio.join(root, name)
        if not is_utf8(name):
            raise DataError(
                f"{printable_name(folder)}: class folder name {printable_name(name)!r} is not "
                "valid UTF-8; rename it (class names go into the records and label_map.json)"
            )
        files = sorted(f for f in fileio.listdir(folder) if fileio.isfile(fileio.join(folder, f)))
        found[name] = ([f for f in files if _is_image(f)], [f for f in files if not _is_image(f)])
    return found


def _split_suggestion(root: str, classes: list[str]) -> str | None:
    """The "set split_image_dirs" message when ``root``'s sub-folders hold class folders
    with images (a split layout read as one root), else None."""
    looking = []
    for name in classes:
        inner = _scan(fileio.join(root, name))
        if any(images for images, _ in inner.values()):
            looking.append(name)
    if not looking:
        return None
    pairs = []
    for name in looking:
        split = "eval" if name.lower() in EVAL_FOLDER_NAMES else name
        pairs.append((split, name))
    example = ", ".join(f"{split}: {name}" for split, name in pairs)
    flags = " ".join(f"--split-dir {split}={name}" for split, name in pairs)
    return (
        f"{root}: its sub-folders hold no image files, but {', '.join(looking)} hold class "
        f"folders with images, so they look like one folder per split; set split_image_dirs "
        f"(split name: folder), e.g. data.split_image_dirs={{{example}}} "
        f"(qatflow ingest {flags})"
    )


def read_folders(root: str | os.PathLike) -> tuple[LabelMap, list[SourceImage], list[str]]:
    """Label map (sorted class names), one image per file (ids 1..N in sorted path order)
    and the files left out because their name is not an image's (reported, not dropped
    silently).

    Raises:
      DataError: no root, no class folders, a class folder without image files, or a
        root whose sub-folders look like split folders (``split_image_dirs`` is the way).
    """
    root = os.fspath(root)
    if not fileio.isdir(root):
        raise DataError(f"{root}: class folder root not found")
    found = _scan(root)
    if not found:
        raise DataError(f"{root}: no class sub-folders")
    if not any(images for images, _ in found.values()):
        message = _split_suggestion(root, list(found))
        if message:
            raise DataError(message)
    images: list[SourceImage] = []
    ignored: list[str] = []
    for name, (chosen, others) in found.items():
        folder = fileio.join(root, name)
        ignored += [fileio.join(folder, f) for f in others]
        if not chosen:
            raise DataError(f"{folder}: class folder holds no image files")
        for file_name in chosen:
            path = fileio.join(folder, file_name)
            images.append(
                SourceImage(
                    image_id=len(images) + 1,
                    file_name=f"{name}/{file_name}",
                    path=path,
                    origin=path,
                    class_label=name,
                    root=root,
                )
            )
    return LabelMap.from_names(found), images, ignored


def split_folder(root: str, folder: str) -> str:
    """Where a split's folder is: ``folder`` when absolute (or a URI), else under ``root``."""
    if os.path.isabs(folder) or fileio.is_remote(folder):
        return folder
    return fileio.join(root, folder)


def read_split_folders(root: str | os.PathLike, split_dirs: Mapping[str, str]) -> FolderIndex:
    """One class-per-folder root per split (``split name -> folder``, relative to ``root``
    or absolute). Image ids run 1..N over the splits in the order given, then class
    and file name; each image's ``file_name`` is ``<folder as given>/<class>/<file>``.

    Raises:
      DataError: a missing split folder, one without class folders, two splits reading
        the same folder, or a class folder without image files in every split.
    """
    root = os.fspath(root)
    if not split_dirs:
        raise DataError(f"{root}: no split folders given (split_image_dirs)")
    folders: dict[str, str] = {}
    scans: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    readers: dict[str, str] = {}
    for split, given in split_dirs.items():
        folder = split_folder(root, given)
        key = fileio.abspath(folder).rstrip("/")
        if key in readers:
            raise DataError(
                f"{folder}: splits {readers[key]} and {split} read the same folder "
                "(their images would be in both splits)"
            )
        readers[key] = split
        if not fileio.isdir(folder):
            raise DataError(
                f"{folder}: folder of split {split} not found (split_image_dirs.{split}: "
                f"{given!r}, relative to {root} unless absolute)"
            )
        scans[split] = _scan(folder)
        if not scans[split]:
            raise DataError(f"{folder}: no class sub-folders (folder of split {split})")
        folders[split] = folder
    names = sorted({name for scan in scans.values() for name in scan})
    with_images = {name for scan in scans.values() for name, (im, _) in scan.items() if im}
    for name in names:
        if name not in with_images:
            where = ", ".join(fileio.join(folders[s], name) for s in scans if name in scans[s])
            raise DataError(f"{where}: class folder holds no image files in any split")
    images: list[SourceImage] = []
    ignored: list[tuple[str, str]] = []
    absent: dict[str, tuple[str, ...]] = {}
    for split, scan in scans.items():
        prefix = split_dirs[split].rstrip("/")
        missing = tuple(n for n in names if not scan.get(n, ([], []))[0])
        if missing:
            absent[split] = missing
        for name, (chosen, others) in scan.items():
            folder = fileio.join(folders[split], name)
            ignored += [(fileio.join(folder, f), split) for f in others]
            for file_name in chosen:
                path = fileio.join(folder, file_name)
                images.append(
                    SourceImage(
                        image_id=len(images) + 1,
                        file_name=f"{prefix}/{name}/{file_name}",
                        path=path,
                        origin=path,
                        split=split,
                        class_label=name,
                        root=folders[split],
                    )
                )
    return FolderIndex(LabelMap.from_names(names), tuple(images), tuple(ignored), absent, folders)
