"""The layout both tasks' Model artifacts share: ``keras/config.json`` + ``keras/weights.h5``.

The Trainer writes its model under ``<artifact>/keras/``; readers accept the
artifact folder or the ``keras/`` folder itself (:func:`resolve_model_dir`).
No TensorFlow here: :mod:`model_maker.tasks` reads the config's ``task``
without loading a model.
"""

from __future__ import annotations

from model_maker.core.data import fileio

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.h5"
KERAS_SUBDIR = "keras"


def resolve_model_dir(path: str) -> str:
    """The folder holding ``config.json``: ``path`` itself or ``path/keras``.

    Raises:
      FileNotFoundError: neither holds one.
    """
    nested = fileio.join(path, KERAS_SUBDIR)
    for candidate in (path, nested):
        if fileio.exists(fileio.join(candidate, CONFIG_FILE)):
            return candidate
    raise FileNotFoundError(f"no {CONFIG_FILE} in {path} or {nested}")
