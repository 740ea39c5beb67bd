"""Items a Beam pipeline's driver listed, handed to the workers through spool files.

Why: ``beam.Create`` of the items themselves embeds every one in the pipeline
(encoded, then copied into the pipeline proto and the runner's buffers), so the
driver's memory grew with the dataset several times over. A ``Create`` of the file
names stays small, and a worker unpickles one file of at most ``ITEMS_PER_FILE``
items at a time. The files are what the runner spreads over its workers:
``ITEM_FILES`` of them for small inputs, more beyond.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam

from model_maker.core.data import fileio

#: At most this many items per spool file, and about this many files for small inputs.
ITEMS_PER_FILE = 256
ITEM_FILES = 64


def spool(items: Sequence[Any], folder: str) -> list[str]:
    """Write ``items`` in pickled batches into ``folder``; returns the files in order."""
    per_file = min(ITEMS_PER_FILE, max(1, -(-len(items) // ITEM_FILES)))
    fileio.makedirs(folder)
    files = []
    for start in range(0, len(items), per_file):
        path = fileio.join(folder, f"items-{start // per_file:05d}.pickle")
        batch = list(items[start : start + per_file])
        fileio.write_bytes(path, pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        files.append(path)
    return files


def read_spooled(path: str) -> Iterator[Any]:
    """The items of one spool file, in order."""
    yield from pickle.loads(fileio.read_bytes(path))


def spooled_items(pipeline: Any, items: Sequence[Any], folder: str, label: str) -> Any:
    """The PCollection of ``items``, spooled into ``folder`` (steps ``label`` and
    ``Read<label>``)."""
    files = spool(items, folder)
    return pipeline | label >> beam.Create(files) | f"Read{label}" >> beam.FlatMap(read_spooled)
