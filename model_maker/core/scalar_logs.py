"""Epoch scalars as TensorBoard event files, without the ``tensorboard`` package.

Both tasks' trainers log with :class:`ScalarLogger`; the dashboard reads the
files (``dashboard/tensorboard.py``) and TensorBoard shows them as usual.
"""

from __future__ import annotations

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
        metadata = _scalar_metadata()
        for key, value in (logs or {}).items():
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(
                    f"epoch_{tag}", tf.constant(float(value)), step=epoch + 1, metadata=metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
