"""Per-image summaries kept in files, not in memory: one JSON line each, read back in order.

Ingestion's writer step (:mod:`model_maker.core.beam_io` with
``meta_line=summary_line``) appends the :class:`ImageSummary` of every image
to a side file of its bundle, in arrival order. The last step then reads them
back sorted by (image id, split) — the order ``summary.write_outputs`` sorts
into — with a bounded-memory external sort: runs of at most ``chunk`` lines
are sorted in memory and written to local temporary files, then merged
(``heapq.merge``, at most ``FAN_IN`` files at a time). Memory thus holds one
chunk, never the dataset.

Lines are JSON with NaN and infinities allowed (``json``'s own extension), so
that a non-finite number reaches the final writer unchanged and is refused
there, naming the output file.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from model_maker.core.data import fileio, summary
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.process import ImageSummary
from model_maker.core.data.source import Issue

#: Lines sorted in memory at a time.
CHUNK = 4096
#: Files merged at a time.
FAN_IN = 64


def summary_line(s: ImageSummary) -> str:
    """One JSON line (no newline) holding ``s``; its sort key leads."""
    return json.dumps(
        [
            s.image_id,
            s.split,
            s.image,
            list(s.annotations),
            [[i.kind, i.where, i.detail, i.split] for i in s.issues],
            [list(pair) for pair in s.label_texts],
            s.class_id,
        ]
    )


def summary_of_line(line: str) -> ImageSummary:
    """The summary :func:`summary_line` wrote (equal to it)."""
    image_id, split, image, anns, issues, pairs, class_id = json.loads(line)
    return ImageSummary(
        image_id,
        split,
        image,
        tuple(anns),
        tuple(Issue(*i) for i in issues),
        tuple((class_id_, name) for class_id_, name in pairs),
        class_id,
    )


def _keyed(line: str) -> tuple[int, str, str]:
    # (image id, split) as write_outputs sorts; the line itself breaks ties, so that the
    # order (and the outputs) does not depend on the order the runner delivered them in
    image_id, split = json.loads(line)[:2]
    return image_id, split, line


def _lines(path: str) -> Iterator[str]:
    """The lines of a side file (local or any Beam filesystem)."""
    if not fileio.is_remote(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield line.rstrip("\n")
        return
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as fh:
        for raw in fh:
            yield raw.decode("utf-8").rstrip("\n")


def _write_run(tmp: str, n: int, keyed: Iterable[tuple[int, str, str]]) -> str:
    path = os.path.join(tmp, f"run-{n}.jsonl")
    with open(path, "w", encoding="utf-8") as fh:
        for _, _, line in keyed:
            fh.write(line + "\n")
    return path


def _merged(runs: Sequence[str]) -> Iterator[tuple[int, str, str]]:
    """The keyed lines of the sorted run files ``runs``, merged."""
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(open(path, encoding="utf-8")) for path in runs]
        yield from heapq.merge(*((_keyed(line.rstrip("\n")) for line in h) for h in handles))


def sorted_lines(
    paths: Iterable[str], tmp: str, chunk: int = CHUNK, fan_in: int = FAN_IN
) -> Iterator[str]:
    """The summary lines of ``paths`` sorted by (image id, split, line), in memory of
    ``chunk`` lines; run files go to the local folder ``tmp``."""
    if chunk < 1 or fan_in < 2:
        raise ValueError(f"chunk must be >= 1 and fan_in >= 2, got {chunk}, {fan_in}")
    lines = itertools.chain.from_iterable(_lines(p) for p in paths)
    runs: list[str] = []
    while True:
        block = sorted(_keyed(line) for line in itertools.islice(lines, chunk))
        if not block:
            break
        runs.append(_write_run(tmp, len(runs), block))
        del block
    made = len(runs)
    while len(runs) > fan_in:
        groups = [runs[i : i + fan_in] for i in range(0, len(runs), fan_in)]
        runs = []
        for group in groups:
            runs.append(_write_run(tmp, made, _merged(group)))
            made += 1
            for path in group:
                os.remove(path)
    for _, _, line in _merged(runs):
        yield line


def write_outputs_from_files(
    output: str,
    paths: Sequence[str],
    label_map: LabelMap | None,
    splits: Sequence[str],
    extra_issues: Sequence[Issue] = (),
    info: dict | None = None,
    chunk: int = CHUNK,
) -> dict:
    """:func:`summary.write_outputs` of the summaries in the side files ``paths``, streamed.

    ``label_map`` None: derived from the records' (class id, name) pairs (TFRecord
    input), an id with several names adding an error issue; that takes a first pass
    over the sorted summaries, which keeps only the distinct pairs.
    Returns the stats dict.

    Raises:
      DataError: see :func:`summary.write_sorted_outputs`.
    """
    issues = list(extra_issues)
    with tempfile.TemporaryDirectory(prefix="qatflow-summaries-") as tmp:
        lines = sorted_lines(paths, tmp, chunk)
        if label_map is None:
            merged = os.path.join(tmp, "sorted.jsonl")
            pairs = set()
            with open(merged, "w", encoding="utf-8") as fh:
                for line in lines:
                    fh.write(line + "\n")
                    pairs.update(summary_of_line(line).label_texts)
            label_map, conflicts = summary.label_map_from_pairs(sorted(pairs), "TFRecord input")
            issues += conflicts
            lines = _lines(merged)
        ordered = (summary_of_line(line) for line in lines)
        return summary.write_sorted_outputs(output, ordered, label_map, splits, issues, info)
