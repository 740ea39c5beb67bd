"""Classification folders: ``ROOT/<class name>/<image>``, one sub-folder per class."""

from __future__ import annotations

import os

from model_maker.core.data import fileio
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.source import SourceImage
from model_maker.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_folders(root: str | os.PathLike) -> tuple[LabelMap, list[SourceImage], list[str]]:
    """Label map (sorted class names), one image per file (ids 1..N in sorted path order)
    and the files left out because their name is not an image's (reported, not dropped
    silently)."""
    root = os.fspath(root)
    if not fileio.isdir(root):
        raise DataError(f"{root}: class folder root not found")
    classes = sorted(d for d in fileio.listdir(root) if fileio.isdir(fileio.join(root, d)))
    if not classes:
        raise DataError(f"{root}: no class sub-folders")
    images: list[SourceImage] = []
    ignored: list[str] = []
    for name in classes:
        folder = fileio.join(root, name)
        files = sorted(f for f in fileio.listdir(folder) if fileio.isfile(fileio.join(folder, f)))
        chosen = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        ignored += [fileio.join(folder, f) for f in files if f not in chosen]
        if not chosen:
            raise DataError(f"{folder}: class folder holds no image files")
        for file_name in chosen:
            rel = f"{name}/{file_name}"
            images.append(
                SourceImage(
                    image_id=len(images) + 1,
                    file_name=rel,
                    path=fileio.join(folder, file_name),
                    origin=fileio.join(folder, file_name),
                    class_label=name,
                )
            )
    return LabelMap.from_names(classes), images, ignored
