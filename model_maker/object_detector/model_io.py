"""Saving and loading the trained detector: config + weights, and pretrained ``uri`` weights.

Layout written by :func:`save_trained_model` (the Trainer's Model artifact
uses it under ``keras/``)::

    <dir>/config.json   {"model_name", "num_classes", "image_size", "hparams",
                         "label_map", "model_config"}
    <dir>/weights.h5    Keras HDF5 weights of the functional detector

:func:`load_trained_model` rebuilds the exact functional model from them.

:func:`load_pretrained_weights` (from :mod:`model_maker.core.pretrained_weights`)
serves the ``uri`` argument of the spec; for a detector the ImageNet route
loads only the backbone (the BiFPN and heads keep their random initialisation).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.model_folder import (  # noqa: F401 - the layout, for readers
    CONFIG_FILE,
    KERAS_SUBDIR,
    WEIGHTS_FILE,
    resolve_model_dir,
)
from model_maker.core.pretrained_weights import (  # noqa: F401 - the spec's uri loader
    copy_variables_by_name,
    load_pretrained_weights,
)
from model_maker.object_detector.model import build_efficientdet_lite
from model_maker.object_detector.model_config import get_model_config

LOG = logging.getLogger("qatflow")

#: ``uri`` values of the offline ImageNet backbone route.


@dataclass(frozen=True)
class TrainedModelConfig:
    """What is needed to rebuild a trained detector.

    Attributes:
      model_name: efficientdet-lite0..4.
      num_classes: number of classes (no background).
      image_size: input size in pixels.
      hparams: the spec's resolved hyper-parameters (training and architecture).
      label_map: 1-based class id -> name.
      model_config: the architecture fields (``EfficientDetLiteConfig.as_dict()``).
    """

    model_name: str
    num_classes: int
    image_size: int
    hparams: Mapping[str, Any]
    label_map: Mapping[int, str]
    model_config: Mapping[str, Any]

    def to_json(self) -> str:
        data = {
            "model_name": self.model_name,
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "hparams": dict(self.hparams),
            "label_map": {str(k): v for k, v in self.label_map.items()},
            "model_config": dict(self.model_config),
        }
        return json.dumps(data, indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> TrainedModelConfig:
        data = json.loads(text)
        return cls(
            model_name=data["model_name"],
            num_classes=int(data["num_classes"]),
            image_size=int(data["image_size"]),
            hparams=data.get("hparams", {}),
            label_map={int(k): v for k, v in data.get("label_map", {}).items()},
            model_config=data["model_config"],
        )


def save_trained_model(model: keras.Model, config: TrainedModelConfig, directory: str) -> str:
    """Write ``config.json`` and ``weights.h5`` of ``model`` into ``directory``."""
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as fh:
        fh.write(config.to_json())
    model.save_weights(os.path.join(directory, WEIGHTS_FILE), save_format="h5")
    return directory


def read_trained_config(model_dir: str) -> TrainedModelConfig:
    """The :class:`TrainedModelConfig` saved in ``model_dir`` (or ``model_dir/keras``)."""
    with tf.io.gfile.GFile(os.path.join(resolve_model_dir(model_dir), CONFIG_FILE)) as fh:
        return TrainedModelConfig.from_json(fh.read())


def load_trained_model(model_dir: str) -> tuple[keras.Model, TrainedModelConfig]:
    """Rebuild the functional detector saved by :func:`save_trained_model` and load its weights.

    ``model_dir`` is the folder holding ``config.json`` or a folder with a
    ``keras/`` sub-folder (the Trainer's Model artifact).
    """
    directory = resolve_model_dir(model_dir)
    config = read_trained_config(directory)
    arch = dict(config.model_config)
    name = arch.pop("model_name")
    arch.pop("backbone_name", None)
    model = build_efficientdet_lite(get_model_config(name, **arch), config.num_classes)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    return model, config
