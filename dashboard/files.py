"""Paths the dashboard may serve (only files inside its root, symlinks resolved first), and
the JSON documents it reads from artifacts."""

from __future__ import annotations

import json
import os
from typing import Any


class OutsideRoot(Exception):
    """The path resolves outside the root (``..``, an absolute path, a symlink out)."""


def resolve(root: str, relative: str) -> str:
    """The real path of ``root/relative``; raises :class:`OutsideRoot` when it leaves ``root``.

    The result may not exist; the caller answers 404 then.
    """
    real_root = os.path.realpath(root)
    if "\x00" in relative:
        raise OutsideRoot(relative)
    target = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, target]) != real_root:
        raise OutsideRoot(relative)
    return target


def relative_to(root: str, path: str) -> str | None:
    """``path`` relative to ``root`` when it is inside it, else None (no link is shown)."""
    if not path or "://" in path:
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        return None
    rel = os.path.relpath(real, real_root)
    return "" if rel == "." else rel


def inside(path: str, *folders: str) -> bool:
    """Whether ``path`` (symlinks resolved) is inside every one of ``folders``."""
    return all(relative_to(folder, path) is not None for folder in folders)


def read_json(path: str) -> tuple[Any, str]:
    """(document, "") of a JSON file; (None, why not) when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh), ""
    except FileNotFoundError:
        return None, f"no {os.path.basename(path)}"
    except (OSError, ValueError) as exc:
        return None, f"{os.path.basename(path)} is not readable JSON: {exc}"
