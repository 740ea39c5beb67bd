"""Per-epoch checkpoints of a Keras model and its optimizer, so a killed training resumes.

Both tasks' float and QAT trainers use them: :class:`CheckpointState` saves
model, optimizer (slots, step, EMA) and the finished epoch count with a
``tf.train.CheckpointManager``; :class:`EpochCheckpoint` saves it after
every epoch. A checkpoint counts once the manager's ``checkpoint`` state
file names it (written after the ``ckpt-N.*`` files), so a run killed
mid-save resumes from the previous epoch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import tensorflow as tf
import tf_keras as keras

LOG = logging.getLogger("qatflow")


class CheckpointState:
    """Per-epoch checkpoints of a model, its optimizer (slots, EMA, step) and an epoch counter.

    ``restore()`` loads the latest checkpoint in ``directory`` and returns the
    number of finished epochs, so a crashed run resumes where it stopped.
    """

    def __init__(
        self,
        directory: str,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        max_to_keep: int = 3,
    ):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep, checkpoint_name="ckpt"
        )

    def restore(self) -> int:
        latest = self.manager.latest_checkpoint
        if not latest:
            return 0
        self.checkpoint.restore(latest).expect_partial()
        LOG.info("resumed from %s (epoch %d)", latest, int(self.epoch.numpy()))
        return int(self.epoch.numpy())

    def save(self, epochs_done: int) -> str:
        self.epoch.assign(epochs_done)
        return self.manager.save(checkpoint_number=epochs_done)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves a :class:`CheckpointState` after every epoch."""

    def __init__(self, state: CheckpointState):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        path = self.state.save(epoch + 1)
        LOG.debug("checkpoint %s", path)


def qat_checkpoint_dir(root: str, float_model_dir: str, hparams: Any) -> str:
    """``root``'s sub-folder for QAT of the float model in ``float_model_dir`` with
    ``hparams`` (a ``QATHParams``), so a new float model never resumes from another's QAT.

    The distribution strategy is not part of the key: checkpoints do not depend on it."""
    values = {k: v for k, v in hparams.as_dict().items() if k != "strategy"}
    key = hashlib.sha256(f"{float_model_dir}|{values}".encode()).hexdigest()[:12]
    return os.path.join(root, key)
