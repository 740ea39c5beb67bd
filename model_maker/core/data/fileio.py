"""File access of the data layer: local paths and any Apache Beam filesystem URI.

A path with a scheme (``gs://``, ``s3://``, ``azfs://``, ``hdfs://`` ...) goes
through Apache Beam's ``FileSystems`` (the same filesystems ``WriteToTFRecord``
and ``ReadAllFromTFRecord`` use), so datasets and the Examples artifact may
live in an object store; a path without one (relative paths included) goes
through the ``os`` / ``open`` calls the data layer always used, so local
behaviour and error messages stay exactly those of the standard library.
TensorFlow is deliberately not used: Beam workers start faster without it.

Object stores have no directories, only object names with ``/`` in them. For
those, a "directory" is a prefix: ``isdir(p)`` means some object is named
``p/...``, ``listdir(p)`` gives the distinct first components after ``p/``,
``makedirs`` does what the Beam filesystem's ``mkdirs`` does (nothing, for
GCS, S3 and Azure). ``glob`` patterns of URIs follow Beam's syntax (``*``
stops at ``/``, ``**`` crosses it).

Errors: reading a missing file raises ``FileNotFoundError`` and any other
failure to read or write raises ``OSError``, both with ``filename`` and
``strerror`` set, whatever the filesystem raised; a scheme no installed Beam
filesystem handles raises ``DataError``.
"""

from __future__ import annotations

import errno
import glob as _glob
import io
import os
import re
import shutil
from typing import TYPE_CHECKING

from model_maker.core.errors import DataError

if TYPE_CHECKING:
    from apache_beam.io.filesystem import FileSystem

#: ``scheme://`` at the start of a path: Beam's own rule (``FileSystems.get_scheme``),
#: checked here so that local paths never import Apache Beam (about 5 s).
_SCHEME = re.compile(r"^([a-zA-Z][-a-zA-Z0-9+.]*)://")

__all__ = [
    "abspath",
    "exists",
    "glob",
    "is_remote",
    "isdir",
    "isfile",
    "join",
    "listdir",
    "makedirs",
    "read_bytes",
    "read_text",
    "remove",
    "remove_tree",
    "rename",
    "walk_files",
    "write_bytes",
    "write_text",
]


def is_remote(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a ``scheme://`` URI (handled by a Beam filesystem)."""
    return _SCHEME.match(os.fspath(path).strip()) is not None


def _filesystem(path: str) -> FileSystem | None:
    """The Beam filesystem of a URI, or None for a local path."""
    match = _SCHEME.match(path.strip())
    if match is None:
        return None
    scheme = match.group(1)
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.get_filesystem(path)
    except ValueError:
        raise DataError(
            f"{path}: no Apache Beam filesystem handles {scheme}:// here "
            "(install the matching extra, e.g. apache-beam[gcp] for gs://)"
        ) from None


def _prefix(path: str) -> str:
    """``path`` as a folder prefix ending in exactly one ``/``."""
    return path.rstrip("/") + "/"


def _under(fs: FileSystem, path: str, limit: int | None = None) -> list:
    """Metadata of the objects whose names start with ``path/`` (any depth)."""
    base = _prefix(path)
    # Beam's patterns cannot quote "[", "*" or "?": match any character there, then filter.
    pattern = re.sub(r"[\[*?]", "?", base)
    if pattern != base:
        limit = None
    found = fs.match([pattern + "**"], [limit])[0].metadata_list
    return [m for m in found if m.path.startswith(base)]


def _os_error(path: str, exc: Exception, fs: FileSystem) -> OSError:
    """An ``OSError`` naming ``path`` for a failed remote read or write."""
    try:
        missing = not fs.exists(path)
    except Exception:  # the original failure is the one to report
        missing = False
    if missing:
        return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    return _failure(path, exc)


def _failure(path: str, exc: Exception) -> OSError:
    """``exc`` of a filesystem client as an ``OSError`` naming ``path``."""
    detail = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
    return OSError(getattr(exc, "errno", None) or errno.EIO, detail, path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``os.path.join`` for local paths, the Beam filesystem's join for URIs."""
    base = os.fspath(base)
    fs = _filesystem(base)
    if fs is None:
        return os.path.join(base, *parts)
    return fs.join(base, *parts)


def abspath(path: str | os.PathLike) -> str:
    """``os.path.abspath`` for local paths; URIs are already absolute."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(path)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of a file.

    Raises:
      FileNotFoundError: no such file.
      OSError: any other read failure (``strerror`` says which).
    """
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        with open(path, "rb") as fh:
            return fh.read()
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.io.filesystem import CompressionTypes

    try:
        with fs.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            return fh.read()
    except Exception as exc:  # every client library raises its own types
        raise _os_error(path, exc, fs) from exc


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The content of a text file, newlines translated as ``open()`` does.

    Raises:
      FileNotFoundError: no such file.
      OSError: any other read failure.
      UnicodeDecodeError: not text in ``encoding``.
    """
    path = os.fspath(path)
    if not is_remote(path):
        with open(path, encoding=encoding) as fh:
            return fh.read()
    return io.TextIOWrapper(io.BytesIO(read_bytes(path)), encoding=encoding).read()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Create or replace a file holding ``data``.

    Raises:
      OSError: the file cannot be written.
    """
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        with open(path, "wb") as fh:
            fh.write(data)
        return
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.io.filesystem import CompressionTypes

    try:
        with fs.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            fh.write(data)
    except Exception as exc:  # every client library raises its own types
        raise _failure(path, exc) from exc


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Create or replace a text file holding ``text``.

    Raises:
      OSError: the file cannot be written.
    """
    path = os.fspath(path)
    if not is_remote(path):
        with open(path, "w", encoding=encoding) as fh:
            fh.write(text)
        return
    write_bytes(path, text.encode(encoding))


def isfile(path: str | os.PathLike) -> bool:
    """``os.path.isfile``; for a URI, whether an object of that exact name exists."""
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        return os.path.isfile(path)
    return bool(fs.exists(path))


def isdir(path: str | os.PathLike) -> bool:
    """``os.path.isdir``; for a URI, whether anything is stored under ``path/``."""
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        return os.path.isdir(path)
    return bool(_under(fs, path, 1))


def exists(path: str | os.PathLike) -> bool:
    """``os.path.exists``; for a URI, a file of that name or a non-empty folder prefix."""
    path = os.fspath(path)
    if not is_remote(path):
        return os.path.exists(path)
    return isfile(path) or isdir(path)


def listdir(path: str | os.PathLike) -> list[str]:
    """Names in a folder (``os.listdir``); for a URI, the distinct first components
    of the names under ``path/`` (files and sub-folders), sorted.

    Raises:
      FileNotFoundError: nothing is stored under ``path``.
    """
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        return os.listdir(path)
    base = _prefix(path)
    found = _under(fs, path)
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    names = {m.path[len(base) :].split("/", 1)[0] for m in found}
    names.discard("")  # a folder marker object ("path/") is no entry
    return sorted(names)


def walk_files(root: str | os.PathLike) -> list[str]:
    """Every file below ``root``, at any depth (``os.walk`` order for local paths)."""
    root = os.fspath(root)
    fs = _filesystem(root)
    if fs is None:
        return [os.path.join(base, n) for base, _, names in os.walk(root) for n in names]
    found = _under(fs, root)
    return sorted(m.path for m in found if not m.path.endswith("/"))


def glob(pattern: str) -> list[str]:
    """``glob.glob`` for local patterns; Beam's ``match`` for URIs (sorted)."""
    fs = _filesystem(pattern)
    if fs is None:
        return _glob.glob(pattern)
    return sorted(m.path for m in fs.match([pattern])[0].metadata_list)


def makedirs(path: str | os.PathLike) -> None:
    """``os.makedirs(path, exist_ok=True)``; for a URI, the filesystem's ``mkdirs``
    (a no-op on object stores), an existing folder being fine."""
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        os.makedirs(path, exist_ok=True)
        return
    try:
        fs.mkdirs(path)
    except OSError:  # Beam's filesystems with real folders refuse an existing one
        if not (fs.exists(path) or isdir(path)):
            raise


def remove(path: str | os.PathLike) -> None:
    """Delete one file (``os.remove``)."""
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        os.remove(path)
        return
    fs.delete([path])


def rename(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move one file to ``dst``, replacing it (``os.replace``); for URIs the filesystem's
    rename (a copy and a delete on object stores). ``dst``'s folder must exist locally.

    Raises:
      OSError: the file cannot be moved.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    fs = _filesystem(src)
    if fs is None:
        os.replace(src, dst)
        return
    try:
        fs.rename([src], [dst])
    except Exception as exc:  # every client library raises its own types
        raise _failure(src, exc) from exc


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a folder and everything below it; nothing happens when there is none."""
    path = os.fspath(path)
    fs = _filesystem(path)
    if fs is None:
        shutil.rmtree(path, ignore_errors=not os.path.exists(path))
        return
    files = walk_files(path)
    if files:
        fs.delete(files)
