"""Epoch scalars as TensorBoard event files, without the ``tensorboard`` package.

Both tasks' trainers log with :class:`ScalarLogger`; the dashboard reads the
files (``dashboard/tensorboard.py``) and TensorBoard shows them as usual.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
import tf_keras as keras


def _scalar_metadata():
    # deferred: TensorFlow takes seconds to import; only this path needs it
    from tensorflow.core.framework import summary_pb2

    # What tensorboard's ``tf.summary.scalar`` writes: the "scalars" plugin marker.
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )


class ScalarLogger(keras.callbacks.Callback):
    """Writes every epoch log value as a TensorBoard scalar (``train/``, ``validation/``).

    The ``tensorboard`` package (needed by ``tf.summary.scalar`` and Keras'
    ``TensorBoard`` callback) is not a dependency of TensorFlow 2.21, so the
    scalars are written with TensorFlow's own ``tf.summary.write`` and the
    scalar plugin's metadata; TensorBoard reads them as usual. Keys starting
    with ``val_`` go to ``validation/`` without the prefix.
    """

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writers: dict[str, Any] = {}

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(f"{self.log_dir}/{name}")
        return self._writers[name]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        _write(self._writer, epoch + 1, logs or {})
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _write(writer_of, step: int, logs: Mapping[str, float]) -> None:
    metadata = _scalar_metadata()
    for key, value in logs.items():
        split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
        with writer_of(split).as_default():
            tf.summary.write(
                f"epoch_{tag}", tf.constant(float(value)), step=step, metadata=metadata
            )


def log_scalars(log_dir: str, step: int, logs: Mapping[str, float]) -> None:
    """Write ``logs`` at epoch ``step`` as :class:`ScalarLogger` does (``val_`` keys to
    ``validation/``), outside ``fit``: e.g. an evaluation made after the last epoch."""
    writers: dict[str, Any] = {}

    def writer_of(name: str):
        if name not in writers:
            writers[name] = tf.summary.create_file_writer(f"{log_dir}/{name}")
        return writers[name]

    _write(writer_of, step, logs)
    for writer in writers.values():
        writer.close()


def copy_logs(src: str, dst: str) -> None:
    """Copy the ``train/`` and ``validation/`` event files of ``src`` into ``dst`` (a run's
    logs written beside its checkpoints belong to the run's ModelRun artifact too)."""
    if os.path.normpath(src) == os.path.normpath(dst):
        return
    for split in ("train", "validation"):
        folder = os.path.join(src, split)
        if not tf.io.gfile.isdir(folder):
            continue
        for root, _, files in tf.io.gfile.walk(folder):
            target = os.path.join(dst, split, os.path.relpath(root, folder))
            tf.io.gfile.makedirs(target)
            for name in files:
                source = os.path.join(root, name)
                tf.io.gfile.copy(source, os.path.join(target, name), overwrite=True)
