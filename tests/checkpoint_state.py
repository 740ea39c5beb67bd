"""The epoch checkpoints a ``tf.train.CheckpointManager`` finished, as a resumed run sees them.

A checkpoint is finished once the manager's ``checkpoint`` state file lists it:
that file is written (atomically) after the ``ckpt-N.*`` files, and it is what a
resumed run reads. Waiting for ``ckpt-N.index`` alone races the state file: a run
killed between the two writes rightly resumes from the previous checkpoint.
"""

from __future__ import annotations

import os
import pathlib
import re

_LISTED = re.compile(r'^all_model_checkpoint_paths: "(?:.*/)?([^/"]+)"$', re.M)


def finished_checkpoints(folder: str | os.PathLike) -> list[str]:
    """Names (``ckpt-N``) the state file in ``folder`` lists, oldest first; [] without one."""
    try:
        text = (pathlib.Path(folder) / "checkpoint").read_text()
    except OSError:
        return []
    return _LISTED.findall(text)


def checkpoint_number(name: str) -> int:
    """N of ``ckpt-N``."""
    return int(name.rsplit("-", 1)[1])
