"""Where an image named by an annotation may be read from, and how its name is written.

An annotation names its image relative to a dataset folder (COCO ``file_name``, VOC
``<filename>``, the class folders). A name that is absolute, climbs out with ``..``,
or reaches a file outside the folder through a symlink would read files beyond the
dataset without a word, so it is refused (``outside_input``) unless the run allows it.
A name that is not valid UTF-8 (on Linux, ``os.listdir`` and JSON ``\\udcXX`` escapes
give such names as surrogate-escaped text) cannot go into a record or a JSON file as
it is: it is written with its undecodable bytes as ``\\xNN`` (``invalid_file_name``).
"""

from __future__ import annotations

import os
import posixpath

from model_maker.core.data import fileio


def printable_name(name: str) -> str:
    """``name`` with every byte that is not UTF-8 written ``\\xNN`` (``name`` if valid)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace") if not is_utf8(name) else name


def is_utf8(name: str) -> bool:
    """Whether ``name`` encodes as UTF-8 (no surrogate-escaped bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(root: str, path: str) -> bool:
    if fileio.is_remote(path) or fileio.is_remote(root):
        # Object stores have no symlinks: the normalised name decides.
        base = posixpath.normpath(root.rstrip("/"))
        return posixpath.normpath(path).startswith(base + "/")
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def outside_reason(root: str, file_name: str, path: str) -> str:
    """Why ``path`` (the file ``file_name`` names) lies outside ``root``; "" when it is inside.

    Inside means: the path, normalised and (for local files) with symlinks
    resolved, is below ``root`` resolved the same way. So an absolute
    ``file_name``, one climbing with ``..`` and a symlink leading out are all
    outside; the reason says which.
    """
    if not root or "\0" in path or _inside(root, path):
        return ""  # a NUL names no file at all: reading it reports the image missing
    shown = repr(printable_name(file_name))
    if posixpath.isabs(file_name) or os.path.isabs(file_name) or fileio.is_remote(file_name):
        return f"{shown} is an absolute name, not one under {printable_name(root)}"
    if ".." in file_name.replace("\\", "/").split("/"):
        return f"{shown} climbs out of {printable_name(root)} with '..'"
    real = printable_name(os.path.realpath(path))
    return f"{shown} is a symlink out of {printable_name(root)} (to {real})"
