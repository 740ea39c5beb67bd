"""``memtest://``: an in-memory Apache Beam filesystem for tests, standing in for an
object store (gs://, s3://) that the tests cannot reach.

Like those, it has no folders (only names with ``/``), and a failed read raises
its own exception type rather than an ``OSError``. Any call site that still
uses ``open()`` or ``os.*`` on such a URI fails with it. Use the fixtures by
importing them into a test module: ``from tests.memtest_fs import mem, store``.
"""

from __future__ import annotations

import gc
import io
import re
from collections.abc import Iterator

import pytest

from model_maker.core.data import fileio

SCHEME = "memtest"
UNREADABLE = "unreadable"  # objects whose name contains this exist but cannot be read


class StoreError(Exception):
    """What the in-memory store raises, as cloud clients raise their own error types."""


@pytest.fixture(scope="module")
def store() -> Iterator[dict[str, bytes]]:
    """The objects of ``memtest://`` (full URI -> bytes), served by a Beam FileSystem.

    Beam registers every ``FileSystem`` subclass when the class is defined, so the
    class is defined here, once per module, and retired (renamed scheme) afterwards.
    """
    from apache_beam.io.filesystem import (
        BeamIOError,
        CompressedFile,
        CompressionTypes,
        FileMetadata,
        FileSystem,
    )

    objects: dict[str, bytes] = {}

    class _Download(io.BytesIO):
        """A read channel (``CompressedFile`` looks at ``mode``)."""

        mode = "rb"

    class _Upload(io.BytesIO):
        """A write channel that stores its bytes under ``path`` when closed."""

        mode = "wb"

        def __init__(self, path: str):
            super().__init__()
            self.path = path

        def close(self) -> None:
            if not self.closed:
                objects[self.path] = self.getvalue()
            super().close()

    class MemoryFileSystem(FileSystem):
        """An object store in a dict: no folders, prefixes instead."""

        scheme_name = SCHEME

        @classmethod
        def scheme(cls):
            return cls.scheme_name

        def join(self, basepath, *paths):
            path = basepath
            for part in paths:
                path = path.rstrip("/") + "/" + part.lstrip("/")
            return path

        def split(self, path):
            head, _, tail = path.rpartition("/")
            return (head, tail) if not head.endswith(":/") else (path, "")

        def mkdirs(self, path):
            pass  # object stores have no folders

        def has_dirs(self):
            return False

        def _list(self, dir_or_prefix):
            for path in sorted(objects):
                if path.startswith(dir_or_prefix):
                    yield FileMetadata(path, len(objects[path]), 0.0)

        @staticmethod
        def _wrap(channel, path, compression_type):
            kind = FileSystem._get_compression_type(path, compression_type)
            if kind == CompressionTypes.UNCOMPRESSED:
                return channel
            return CompressedFile(channel, compression_type=kind)

        def create(self, path, mime_type="application/octet-stream", compression_type="auto"):
            return self._wrap(_Upload(path), path, compression_type)

        def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
            if path not in objects:
                raise StoreError(f"404 no such object: {path}")
            if UNREADABLE in path:
                raise StoreError(f"403 access denied: {path}")
            return self._wrap(_Download(objects[path]), path, compression_type)

        def copy(self, source_file_names, destination_file_names):
            failed = {}
            for src, dst in zip(source_file_names, destination_file_names, strict=True):
                if src in objects:
                    objects[dst] = objects[src]
                else:
                    failed[(src, dst)] = StoreError(f"404 no such object: {src}")
            if failed:
                raise BeamIOError("Copy operation failed", failed)

        def rename(self, source_file_names, destination_file_names):
            self.copy(source_file_names, destination_file_names)
            for src in source_file_names:
                objects.pop(src, None)

        def exists(self, path):
            return path in objects

        def size(self, path):
            return len(objects[path])

        def last_updated(self, path):
            return 0.0

        def checksum(self, path):
            return str(len(objects[path]))

        def metadata(self, path):
            if path not in objects:
                raise BeamIOError("Metadata operation failed", {path: StoreError("404")})
            return FileMetadata(path, len(objects[path]), 0.0)

        def delete(self, paths):
            failed = {}
            for path in paths:
                under = [p for p in objects if p == path or p.startswith(path.rstrip("/") + "/")]
                if not under:
                    failed[path] = StoreError(f"404 no such object: {path}")
                for p in under:
                    del objects[p]
            if failed:
                raise BeamIOError("Delete operation failed", failed)

    yield objects
    objects.clear()
    MemoryFileSystem.scheme_name = f"{SCHEME}-retired-{id(MemoryFileSystem)}"
    del MemoryFileSystem
    gc.collect()


@pytest.fixture
def mem(store, request, tmp_path_factory, monkeypatch) -> Iterator[str]:
    """An empty ``memtest://`` folder prefix for one test.

    The test runs in an empty working directory: ``os.makedirs`` or ``open(.., "w")``
    on a ``memtest://`` URI would create a local ``memtest:`` folder there, not fail.
    """
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    root = f"{SCHEME}://bucket/{re.sub(r'[^A-Za-z0-9_.-]', '_', request.node.name)}"
    yield root
    for path in [p for p in store if p.startswith(root + "/")]:
        del store[path]
    assert not list(cwd.iterdir()), "a memtest:// URI was used as a local path"


def upload(local_dir, remote_dir: str) -> None:
    """Copy every file under a local folder to the same relative names under a URI."""
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        fileio.write_bytes(fileio.join(remote_dir, rel), path.read_bytes())
