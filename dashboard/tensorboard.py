"""Scalars of TensorBoard event files (training curves), read with TensorFlow's summary_iterator.

The Trainer's ModelRun (and the QATTrainer's ``model_run``) holds ``train/`` and
``validation/`` event files with ``epoch_<name>`` scalars (a ScalarLogger writes
them with ``tf.summary.write`` as tensors; TensorBoard's ``simple_value`` form is
read too). TensorFlow is imported on the first read only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

EVENT_MARKER = "tfevents"
_MAX_DEPTH = 3


@dataclass(frozen=True)
class Series:
    """One scalar curve.

    Attributes:
      split: sub-folder of the log dir (train, validation; "" for the top).
      tag: scalar tag (``epoch_loss``).
      steps: steps (epochs for ``epoch_`` tags).
      values: values, same length as ``steps``.
    """

    split: str
    tag: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The tag without Keras' ``epoch_`` prefix."""
        return self.tag[len("epoch_") :] if self.tag.startswith("epoch_") else self.tag


def event_files(log_dir: str) -> list[str]:
    """Event files under ``log_dir`` (three levels deep at most), sorted."""
    found = []
    if not os.path.isdir(log_dir):
        return found
    for current, dirs, files in os.walk(log_dir):
        depth = os.path.relpath(current, log_dir).count(os.sep) + (current != log_dir)
        dirs[:] = sorted(dirs) if depth < _MAX_DEPTH else []
        found += [os.path.join(current, f) for f in sorted(files) if EVENT_MARKER in f]
    return sorted(found)


def _scalar(value) -> float | None:
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return float(value.simple_value)
    if kind == "tensor":
        import tensorflow as tf  # deferred: TensorFlow is heavy; only tensor summaries need it

        array = tf.make_ndarray(value.tensor)
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(()))
    return None


def read_file(path: str) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of one event file; a truncated file gives what was read."""
    import tensorflow as tf  # deferred: TensorFlow takes seconds; the dashboard starts without it

    out: dict[str, list[tuple[int, float]]] = {}
    try:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                number = _scalar(value)
                if number is not None:
                    out.setdefault(value.tag, []).append((int(event.step), number))
    except (tf.errors.DataLossError, tf.errors.OpError, OSError):
        pass  # a file being written (or cut short) keeps the events before the damage
    return out


def read_scalars(log_dir: str, files: Iterable[str] | None = None) -> list[Series]:
    """Every scalar series under ``log_dir``, by split then tag; later steps win on repeats."""
    merged: dict[tuple[str, str], dict[int, float]] = {}
    for path in files if files is not None else event_files(log_dir):
        split = os.path.relpath(os.path.dirname(path), log_dir)
        split = "" if split == "." else split
        for tag, points in read_file(path).items():
            merged.setdefault((split, tag), {}).update(dict(points))
    return [
        Series(split, tag, sorted(points), [points[s] for s in sorted(points)])
        for (split, tag), points in sorted(merged.items())
    ]


def signature(log_dir: str) -> tuple[tuple[str, int, int], ...]:
    """(file, size, mtime) of every event file: changes when the logs change."""
    out = []
    for path in event_files(log_dir):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        out.append((path, stat.st_size, stat.st_mtime_ns))
    return tuple(out)
