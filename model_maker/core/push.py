"""Versioned, atomic, idempotent copy of a model's files to a serving destination.

Layout of a destination (a local folder or any ``tf.io.gfile`` URL)::

    <destination>/v1/<files...>  push.json
    <destination>/v2/...
    <destination>/.staging-<fingerprint12>-<random>/   (only while a push runs)

A push copies every file into a fresh ``.staging-*`` folder, writes
``push.json`` (fingerprint, file list, time) last, then publishes it as
``v<N+1>``. On a local file system publishing is one folder rename, which is
atomic: a crash leaves either no new version or a complete one. Object stores
(``gs://``, ``s3://``; any ``scheme://`` URL, through ``tf.io.gfile``) have no
folder rename, so the staged files are copied into ``v<N+1>/`` with
``push.json`` last: a version counts only when its ``push.json`` is there
(readers of the destination should check it too), and a folder left without
it by a crash is skipped by the next push. A stale staging folder of the same
fingerprint is removed by the next push.

The fingerprint is the SHA-256 of the file names and contents; pushing files
whose fingerprint already has a version pushes nothing and returns that
version (idempotent reruns).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from model_maker.core.metrics_document import METRICS_FILE
from model_maker.core.tflite_manifest import LABELS_FILE, MANIFEST_FILE, variant_entry

LOG = logging.getLogger("qatflow")

#: Written last into every version folder.
MARKER = "push.json"
STAGING_PREFIX = ".staging-"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Attributes:
      pushed: a new version was written by this call.
      version: version number of the files at the destination (new or existing),
        0 when nothing was pushed and none exists.
      path: folder of that version ("" when none).
      fingerprint: SHA-256 of the pushed files.
      reason: one line for the log (why pushed, skipped or refused).
    """

    pushed: bool
    version: int
    path: str
    fingerprint: str
    reason: str


class _LocalFS:
    """The few file operations a push needs, on the local file system (no TensorFlow)."""

    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)
    listdir = staticmethod(os.listdir)
    rmtree = staticmethod(shutil.rmtree)

    @staticmethod
    def makedirs(path: str) -> None:
        os.makedirs(path, exist_ok=True)

    @staticmethod
    def copy(src: str, dst: str, overwrite: bool = False) -> None:
        del overwrite
        if "://" in src:
            _gfile().copy(src, dst, overwrite=True)
        else:
            shutil.copyfile(src, dst)

    @staticmethod
    def rename(src: str, dst: str, overwrite: bool = False) -> None:
        del overwrite
        os.rename(src, dst)  # atomic on POSIX; callers check that dst does not exist

    @staticmethod
    def GFile(path: str, mode: str = "r"):  # noqa: N802 - mirrors tf.io.gfile.GFile
        return open(path, mode) if "b" in mode else open(path, mode, encoding="utf-8")


def _gfile():
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    return tf.io.gfile


def _fs(path: str):
    """``tf.io.gfile`` for URLs (gs://, s3://, hdfs://), plain ``os`` for local paths."""
    return _gfile() if "://" in path else _LocalFS


def _join(base: str, name: str) -> str:
    return posixpath.join(base, name) if "://" in base else os.path.join(base, name)


def fingerprint_files(files: Mapping[str, str]) -> str:
    """SHA-256 over the sorted ``(name, content)`` pairs of ``files`` (name -> source path)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode("utf-8") + b"\0")
        with _fs(files[name]).GFile(files[name], "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def list_versions(destination: str) -> dict[int, str]:
    """Complete versions at ``destination`` (number -> fingerprint); missing folder: none."""
    gfile = _fs(destination)
    if not gfile.isdir(destination):
        return {}
    out = {}
    for entry in gfile.listdir(destination):
        match = _VERSION.match(entry.rstrip("/"))
        if not match:
            continue
        marker = _join(_join(destination, entry.rstrip("/")), MARKER)
        if not gfile.exists(marker):
            continue
        with gfile.GFile(marker) as fh:
            out[int(match.group(1))] = json.load(fh).get("fingerprint", "")
    return out


def push_files(
    files: Mapping[str, str],
    destination: str,
    *,
    metadata: Mapping[str, object] | None = None,
    before_rename: Callable[[str], None] | None = None,
) -> PushResult:
    """Push ``files`` (destination file name -> source path) as a new version.

    Args:
      files: what to copy; names are file names inside the version folder.
      destination: local folder or ``tf.io.gfile`` URL; created if missing.
      metadata: extra JSON-able fields for ``push.json`` (run id, metrics...).
      before_rename: called with the staging folder after everything is staged
        and before the rename (a hook for tests and progress reports).

    Returns:
      a :class:`PushResult`.
    """
    if not files:
        raise ValueError("nothing to push")
    for name in files:
        if not name or "/" in name or name in (MARKER, ".", ".."):
            raise ValueError(f"invalid file name to push: {name!r}")
    gfile = _fs(destination)
    fingerprint = fingerprint_files(files)
    gfile.makedirs(destination)
    versions = list_versions(destination)
    for number, existing in sorted(versions.items()):
        if existing == fingerprint:
            path = _join(destination, f"v{number}")
            return PushResult(
                False, number, path, fingerprint, f"already pushed as v{number} ({path})"
            )

    _remove_stale_staging(destination, fingerprint)
    staging = _join(destination, f"{STAGING_PREFIX}{fingerprint[:12]}-{uuid.uuid4().hex[:8]}")
    gfile.makedirs(staging)
    for name, source in sorted(files.items()):
        gfile.copy(source, _join(staging, name), overwrite=True)
    record = {
        "fingerprint": fingerprint,
        "files": sorted(files),
        "pushed_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **dict(metadata or {}),
    }
    with gfile.GFile(_join(staging, MARKER), "w") as fh:
        fh.write(json.dumps(record, indent=2, sort_keys=True))
    if before_rename is not None:
        before_rename(staging)

    number = max(versions, default=0) + 1
    while True:
        final = _join(destination, f"v{number}")
        # Taken by another pusher, or an incomplete folder of an interrupted object-store push.
        if gfile.exists(final):
            number += 1
            continue
        if "://" not in destination:
            try:
                gfile.rename(staging, final)
            except OSError:
                if gfile.exists(final):
                    number += 1
                    continue
                raise
        else:
            _publish_by_copy(staging, final, [*sorted(files), MARKER])
        break
    LOG.info("pushed %d file(s) to %s", len(files), final)
    return PushResult(True, number, final, fingerprint, f"pushed as v{number} ({final})")


def _publish_by_copy(staging: str, final: str, names: list[str]) -> None:
    """Object stores have no folder rename: copy each file, ``push.json`` last, then clean up."""
    gfile = _gfile()
    gfile.makedirs(final)
    for name in names:  # MARKER is last: the version counts only once it is there
        gfile.copy(_join(staging, name), _join(final, name), overwrite=True)
    gfile.rmtree(staging)


def _remove_stale_staging(destination: str, fingerprint: str) -> None:
    """Remove staging folders a crashed push of the same files left behind."""
    gfile = _fs(destination)
    prefix = f"{STAGING_PREFIX}{fingerprint[:12]}-"
    for entry in gfile.listdir(destination):
        if entry.rstrip("/").startswith(prefix):
            stale = _join(destination, entry.rstrip("/"))
            LOG.info("removing the staging folder of an interrupted push: %s", stale)
            gfile.rmtree(stale)


def bundle_files(tflite_dir: str, evaluation_dir: str, candidate: str) -> dict[str, str]:
    """What a pushed model bundle holds: name -> source path.

    The candidate's ``.tflite`` (and its anchors file for raw models), the set's
    ``labels.txt`` and ``manifest.json``, and the Evaluator's ``metrics.json``.

    Raises:
      DataError: ``candidate`` is not in the set's manifest.
    """
    entry = variant_entry(tflite_dir, candidate)
    files = {
        entry["file"]: _join(tflite_dir, entry["file"]),
        LABELS_FILE: _join(tflite_dir, LABELS_FILE),
        MANIFEST_FILE: _join(tflite_dir, MANIFEST_FILE),
        METRICS_FILE: _join(evaluation_dir, METRICS_FILE),
    }
    if entry.get("anchors_file"):
        files[entry["anchors_file"]] = _join(tflite_dir, entry["anchors_file"])
    return files
