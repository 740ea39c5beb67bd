"""Paths the dashboard may serve: only files inside its root, symlinks resolved first."""

from __future__ import annotations

import os


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
