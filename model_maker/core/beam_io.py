"""Shard files written from a Beam pipeline on any runner, then committed and counted.

Why not ``beam.io.WriteToTFRecord`` / ``WriteToText``: Beam's file sinks hand
each bundle's temporary file to the finalizing step from ``finish_bundle``,
and Beam's DaskRunner (2.77) drops whatever ``finish_bundle`` emits, so the
sink finalizes nothing and leaves one empty file behind, with exit 0. The
same runner also computes only the last transform applied to the pipeline
(other leaves never run), merges the tagged outputs of a multi-output ParDo
(``with_outputs``, ``Partition``) into one collection, and cannot read a
bounded source from the pipeline root (``ReadFromTFRecord``; use ``Create``
plus ``ReadAllFromTFRecord``). The pipelines of this project therefore are
one chain ending in a single step, and write files like this:

1. :class:`ShardWriterFn` appends each element's payload to a temporary shard
   of its destination (one per bundle and destination, or one per group with a
   fixed shard count), closes it in ``finish_bundle`` and then writes a
   ``.done`` file holding the number of records in it. For every element it
   emits a :class:`Written` token from ``process`` (never from
   ``finish_bundle``), carrying the element's metadata on; or, given a
   ``meta_line`` function, it writes the metadata as one text line to a side
   file of the bundle (``meta-*.meta``, closed and counted like a shard), and
   the token only names that file: the tokens then stay a few bytes whatever
   the metadata, and the last step reads the metadata back from the files.
2. After a grouping step (``ToList``, or :func:`count_written`, which counts
   tokens per shard and side file, so that what reaches the last step grows with
   the shards, not the elements), :func:`commit_shards` checks that every
   shard and side file a token names was closed and holds as many records as
   tokens name it (so a lost, unfinished or duplicated bundle fails the run with
   a clear error instead of a short dataset), renames the shards to
   ``<prefix>-SSSSS-of-NNNNN<suffix>`` (Beam's names), writes an empty shard
   for a destination without records, and removes the temporary folder
   (shards of retried bundles, which no token names, included).

Payloads are written as TFRecords (Beam's own framing and crc32c, so the files
equal WriteToTFRecord's) or as text lines; a ``.gz`` suffix gzips the shard at
the layout's ``compression_level`` (by default zlib's, which Beam's ``AUTO``
compression writes). Every path goes through Beam's ``FileSystems``, so outputs
may be local or on any object store the workers can reach.
"""

from __future__ import annotations

import json
import logging
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from model_maker.core.data import fileio

LOG = logging.getLogger("qatflow.beam_io")
#: Suffix of the file that says a temporary shard was closed, and how many records it holds.
DONE_SUFFIX = ".done"
PART_SUFFIX = ".part"
#: Suffix of the side files holding the metadata lines of a bundle's elements.
META_SUFFIX = ".meta"


@dataclass(frozen=True)
class ShardLayout:
    """Where and how the shards of each destination are written.

    Attributes:
      prefixes: destination -> final file prefix (``.../Split-train/data_tfrecord``);
        every destination gets at least one shard, empty when it has no record.
      temp_dir: folder for the temporary shards (removed by the commit); on the
        same filesystem as the prefixes, so that the commit is a rename.
      suffix: file name suffix; ``.gz`` gzips the shards.
      compression_level: zlib level of ``.gz`` shards: -1 (zlib's default, what Beam
        writes) .. 9; 0 stores the records in gzip framing without compressing
        them, for payloads that are compressed already (JPEG, PNG).
      kind: "tfrecord" (payloads are bytes) or "text" (str lines, newline-terminated).
      num_shards: 0: one shard per bundle (records stream from reader to writer);
        N: exactly N shards per destination (a grouping step gathers each shard's
        records first, as Beam's sinks do).
    """

    prefixes: Mapping[str, str]
    temp_dir: str
    suffix: str = ""
    kind: Literal["tfrecord", "text"] = "tfrecord"
    num_shards: int = 0
    compression_level: int = zlib.Z_DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        if not -1 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be -1..9, got {self.compression_level}")
        if self.kind not in ("tfrecord", "text"):
            raise ValueError(f"kind must be 'tfrecord' or 'text', got {self.kind!r}")
        if self.num_shards < 0:
            raise ValueError(f"num_shards must be >= 0, got {self.num_shards}")
        if not self.prefixes:
            raise ValueError("give at least one destination")

    def final_name(self, destination: str, index: int, count: int) -> str:
        return f"{self.prefixes[destination]}-{index:05d}-of-{count:05d}{self.suffix}"


@dataclass(frozen=True)
class Written:
    """What the writer did with one element: its destination, the temporary shard
    holding its payload (None: the element had no payload), its metadata (None when
    it went to the side file ``meta_file`` instead)."""

    destination: str
    shard: str | None
    meta: Any = None
    index: int | None = None  # the shard's number with a fixed shard count
    meta_file: str | None = None


@dataclass
class WrittenCounts:
    """The tokens of a write, counted: what :func:`commit_shards` needs, in memory that
    grows with the number of shards and side files, not of elements.

    Attributes:
      shards: (destination, temporary shard or None, shard number or None) -> tokens.
      meta_files: side file -> tokens naming it.
      elements: all tokens.
    """

    shards: Counter = field(default_factory=Counter)
    meta_files: Counter = field(default_factory=Counter)
    elements: int = 0

    def add(self, token: Written) -> WrittenCounts:
        self.shards[(token.destination, token.shard, token.index)] += 1
        if token.meta_file is not None:
            self.meta_files[token.meta_file] += 1
        self.elements += 1
        return self

    def merge(self, other: WrittenCounts) -> WrittenCounts:
        self.shards.update(other.shards)
        self.meta_files.update(other.meta_files)
        self.elements += other.elements
        return self

    @classmethod
    def of(cls, tokens: Iterable[Written] | WrittenCounts) -> WrittenCounts:
        if isinstance(tokens, WrittenCounts):
            return tokens
        counts = cls()
        for token in tokens:
            counts.add(token)
        return counts


class CountWrittenFn(beam.CombineFn):
    """:class:`Written` tokens -> one :class:`WrittenCounts`."""

    def create_accumulator(self) -> WrittenCounts:
        return WrittenCounts()

    def add_input(self, accumulator: WrittenCounts, token: Written) -> WrittenCounts:
        return accumulator.add(token)

    def merge_accumulators(self, accumulators) -> WrittenCounts:
        merged = WrittenCounts()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: WrittenCounts) -> WrittenCounts:
        return accumulator


def count_written(tokens, label: str = "CountWritten"):
    """The grouping step before :func:`commit_shards`: one :class:`WrittenCounts` of all
    ``tokens`` (every bundle has finished when it is computed)."""
    return tokens | label >> beam.CombineGlobally(CountWrittenFn())


@dataclass
class _Open:
    """A temporary shard being written in this bundle."""

    path: str
    handle: Any
    count: int = 0


@dataclass(frozen=True)
class ShardCommit:
    """What :func:`commit_shards` published: destination -> final files, and records."""

    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    records: Mapping[str, int] = field(default_factory=dict)


class ShardError(RuntimeError):
    """The files written do not hold what went into the writer."""


class _GzipWriter:
    """A gzip stream at a chosen zlib level onto a Beam file handle (Beam's own GZIP
    writer always uses zlib's default level)."""

    def __init__(self, handle, level: int):
        self._handle = handle
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)

    def write(self, data: bytes) -> None:
        self._handle.write(self._compressor.compress(data))

    def close(self) -> None:
        try:
            self._handle.write(self._compressor.flush())
        finally:
            self._handle.close()


def _create(path: str, suffix: str, level: int = zlib.Z_DEFAULT_COMPRESSION):
    handle = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return _GzipWriter(handle, level) if suffix.endswith(".gz") else handle


def _write_payload(handle, kind: str, payload: Any) -> None:
    if kind == "text":
        handle.write(payload.encode("utf-8") + b"\n")
        return
    # Beam's TFRecord framing (length, masked crc32c of length and data), so the shards
    # are byte for byte what WriteToTFRecord writes.
    _TFRecordUtil.write_record(handle, payload)


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as fh:
        fh.write(text.encode("utf-8"))


def _read_text(path: str) -> str:
    with FileSystems.open(path) as fh:
        return fh.read().decode("utf-8")


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


class ShardWriterFn(beam.DoFn):
    """``(destination, payload or None, meta)`` -> :class:`Written` (see the module doc).

    With a fixed shard count the input is ``((destination, index), elements)`` from
    :func:`write_shards`' grouping step, and each group becomes one closed shard.
    """

    def __init__(self, layout: ShardLayout, meta_line: Callable[[Any], str] | None = None):
        super().__init__()
        self.layout = layout
        self.meta_line = meta_line
        self._open: dict[str, _Open] = {}
        self._meta: _Open | None = None

    def start_bundle(self) -> None:
        self._open = {}
        self._meta = None

    def _new_shard(self, destination: str) -> _Open:
        # the destination in the name only helps a person reading the temp folder
        safe = "".join(c if c.isalnum() else "_" for c in destination)[:40]
        path = f"{self.layout.temp_dir.rstrip('/')}/{safe}-{uuid.uuid4().hex}{PART_SUFFIX}"
        return _Open(path, _create(path, self.layout.suffix, self.layout.compression_level))

    def _close(self, shard: _Open) -> None:
        shard.handle.close()
        _write_text(shard.path + DONE_SUFFIX, json.dumps({"records": shard.count}))

    def _token(self, destination: str, shard: _Open | None, meta, index=None) -> Written:
        """The token of one element; its metadata goes to the bundle's side file when the
        writer has a ``meta_line``."""
        path = shard.path if shard is not None else None
        if self.meta_line is None:
            return Written(destination, path, meta, index)
        if self._meta is None:
            name = f"meta-{uuid.uuid4().hex}{META_SUFFIX}"
            meta_path = f"{self.layout.temp_dir.rstrip('/')}/{name}"
            self._meta = _Open(meta_path, _create(meta_path, ""))
        _write_payload(self._meta.handle, "text", self.meta_line(meta))
        self._meta.count += 1
        return Written(destination, path, None, index, self._meta.path)

    def _close_meta(self) -> None:
        meta, self._meta = self._meta, None
        if meta is not None:
            self._close(meta)

    def process(self, element) -> Iterator[Written]:
        if self.layout.num_shards:
            (destination, index), items = element
            shard = self._new_shard(destination) if index >= 0 else None
            try:
                for _, payload, meta in items:
                    if shard is None or payload is None:
                        yield self._token(destination, None, meta)
                        continue
                    _write_payload(shard.handle, self.layout.kind, payload)
                    shard.count += 1
                    yield self._token(destination, shard, meta, index)
            finally:
                if shard is not None:
                    self._close(shard)
                self._close_meta()  # one side file per group, as one shard
            return
        destination, payload, meta = element
        if payload is None:
            yield self._token(destination, None, meta)
            return
        shard = self._open.get(destination)
        if shard is None:
            shard = self._open[destination] = self._new_shard(destination)
        _write_payload(shard.handle, self.layout.kind, payload)
        shard.count += 1
        yield self._token(destination, shard, meta)

    def finish_bundle(self) -> None:
        shards, self._open = list(self._open.values()), {}
        for shard in shards:
            self._close(shard)
        self._close_meta()


def _shard_key(num_shards: int):
    def key(element):
        destination, payload, _ = element
        if payload is None:
            return (destination, -1), element
        # a content hash: the same input gives the same shards on a rerun
        data = payload if isinstance(payload, bytes) else payload.encode("utf-8")
        return (destination, zlib.crc32(data) % num_shards), element

    return key


def write_shards(
    pcoll,
    layout: ShardLayout,
    label: str = "WriteShards",
    meta_line: Callable[[Any], str] | None = None,
):
    """Write ``(destination, payload or None, meta)`` elements; returns the PCollection of
    :class:`Written` tokens, which must reach :func:`commit_shards` through a grouping
    step (:func:`count_written` or ``beam.combiners.ToList()``), so that every bundle
    has finished first. ``meta_line``: metadata -> one line of text (no newline) for the
    side files (see the module doc); the tokens then carry no metadata."""
    if layout.num_shards:
        pcoll = (
            pcoll
            | f"{label}/Key" >> beam.Map(_shard_key(layout.num_shards))
            | f"{label}/Group" >> beam.GroupByKey()
        )
    return pcoll | f"{label}/Write" >> beam.ParDo(ShardWriterFn(layout, meta_line))


def _shards_of(counts: WrittenCounts, destination: str) -> list[tuple[int, str]]:
    """(shard number or 0, temporary path) of ``destination``'s shards, in a stable order.

    Raises:
      ShardError: two shards claim one number (a fixed shard count written twice).
    """
    shards = sorted({(index or 0, shard) for dest, shard, index in counts.shards
                     if dest == destination and shard is not None})  # fmt: skip
    numbers = [index for index, _ in shards]
    numbered = any(index is not None for _, _, index in counts.shards)
    if numbered and len(set(numbers)) != len(numbers):
        raise ShardError(f"{destination}: several temporary shards share a number: {shards}")
    return shards


def _records_per_shard(counts: WrittenCounts) -> Counter:
    expected: Counter = Counter()
    for (_, shard, _), n in counts.shards.items():
        if shard is not None:
            expected[shard] += n
    return expected


def check_shards(tokens: Iterable[Written] | WrittenCounts, layout: ShardLayout) -> WrittenCounts:
    """Check the temporary shards and side files against the tokens (or their counts),
    changing nothing; returns the counts.

    Raises:
      ShardError: a token for an unknown destination, a shard or side file that was never
        closed, or one holding a different number of records than tokens name it.
    """
    counts = WrittenCounts.of(tokens)
    unknown = sorted({d for d, shard, _ in counts.shards if shard} - set(layout.prefixes))
    if unknown:
        raise ShardError(f"records for unknown destination(s) {unknown}")
    problems = []
    expected = _records_per_shard(counts)
    for path, count in sorted(expected.items()) + sorted(counts.meta_files.items()):
        if not _exists(path + DONE_SUFFIX):
            problems.append(f"{path}: never closed ({count} records went in)")
            continue
        written = json.loads(_read_text(path + DONE_SUFFIX))["records"]
        if written != count:
            problems.append(f"{path}: {written} records written, {count} went in")
    if problems:
        raise ShardError(
            f"{len(problems)} shard(s) do not hold what went in, refusing to publish them: "
            + "; ".join(problems[:5])
        )
    return counts


def commit_shards(tokens: Iterable[Written] | WrittenCounts, layout: ShardLayout) -> ShardCommit:
    """Check the temporary shards against the tokens (:func:`check_shards`), then
    :func:`publish_shards` them.

    Raises:
      ShardError: see :func:`check_shards`.
    """
    return publish_shards(check_shards(tokens, layout), layout)


def publish_shards(counts: WrittenCounts, layout: ShardLayout) -> ShardCommit:
    """Move shards :func:`check_shards` passed to their final names and remove the
    temporary folder, side files included (see the module doc)."""
    expected = _records_per_shard(counts)
    files: dict[str, tuple[str, ...]] = {}
    records: dict[str, int] = {}
    for destination in layout.prefixes:
        shards = _shards_of(counts, destination)
        if layout.num_shards:
            count = layout.num_shards
            by_index = dict(shards)
            plan = [(by_index.get(i), i) for i in range(count)]
        else:
            count = max(1, len(shards))
            plan = [(path, i) for i, (_, path) in enumerate(shards)] or [(None, 0)]
        names = []
        fileio.makedirs(layout.prefixes[destination].rsplit("/", 1)[0])
        for path, index in plan:
            target = layout.final_name(destination, index, count)
            if path is None:
                # an empty shard, as Beam writes
                _create(target, layout.suffix, layout.compression_level).close()
            else:
                FileSystems.rename([path], [target])
            names.append(target)
        files[destination] = tuple(names)
        records[destination] = sum(expected[path] for _, path in shards)
    unused = [p for p in fileio.walk_files(layout.temp_dir) if p.endswith(PART_SUFFIX)]
    if unused:
        LOG.info("%d unused temporary shard(s) of retried bundles removed", len(unused))
    fileio.remove_tree(layout.temp_dir)
    return ShardCommit(files, records)


def run(pipeline) -> None:
    """Run ``pipeline`` to the end, then close the runner's client if it opened one.

    Why: the DaskRunner connects a ``dask.distributed`` client per run and never
    closes it; it would keep the connection (and its reconnect attempts) alive.
    """
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()
