"""Saving and loading a trained image classifier (config + weights) and pretrained ``uri`` weights.

Layout written by :func:`save_trained_model` (the Trainer's Model artifact
holds it under ``keras/``)::

    <dir>/config.json   {"task": "image_classification", "model_name", "num_classes",
                         "image_size", "label_map", "hparams"}
    <dir>/weights.h5    Keras HDF5 weights of the functional classifier

:func:`load_trained_model` rebuilds the same functional model (the spec at
the saved size and class count) and loads the weights. The ``task`` key is
what tells a classifier's Model artifact from a detector's (whose config
has none). :func:`load_pretrained` serves the options' ``uri`` (see
:mod:`model_maker.core.pretrained_weights`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.errors import UsageError
from model_maker.core.model_folder import (  # noqa: F401 - the layout, for readers
    CONFIG_FILE,
    KERAS_SUBDIR,
    WEIGHTS_FILE,
    resolve_model_dir,
)
from model_maker.core.options import IMAGE_CLASSIFICATION
from model_maker.core.pretrained_cache import canonical_backbone
from model_maker.core.pretrained_weights import load_pretrained_weights
from model_maker.image_classifier.hparams import HParams
from model_maker.image_classifier.image_classifier_spec import get_spec

LOG = logging.getLogger("qatflow")


@dataclass(frozen=True)
class ClassifierConfig:
    """What rebuilds a trained classifier.

    Attributes:
      model_name: the spec's name (``efficientnet_lite0``...).
      num_classes: C, the logits' size.
      image_size: the square input side in pixels.
      label_map: 1-based class id -> name (model class k is id k + 1).
      hparams: the ``HParams`` it was trained with (as plain data).
      task: always ``image_classification``.
    """

    model_name: str
    num_classes: int
    image_size: int
    label_map: Mapping[int, str] = field(default_factory=dict)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    task: str = IMAGE_CLASSIFICATION

    @property
    def labels(self) -> list[str]:
        """Class names in the order of the model's outputs."""
        return [str(self.label_map.get(i + 1, f"class_{i + 1}")) for i in range(self.num_classes)]

    def to_json(self) -> str:
        return json.dumps(
            {
                "task": self.task,
                "model_name": self.model_name,
                "num_classes": self.num_classes,
                "image_size": self.image_size,
                "label_map": {str(k): v for k, v in sorted(self.label_map.items())},
                "hparams": dict(self.hparams),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ClassifierConfig:
        data = json.loads(text)
        if data.get("task") != IMAGE_CLASSIFICATION:
            raise ValueError(f"not an image classifier's config (task {data.get('task')!r})")
        return cls(
            model_name=data["model_name"],
            num_classes=int(data["num_classes"]),
            image_size=int(data["image_size"]),
            label_map={int(k): v for k, v in data.get("label_map", {}).items()},
            hparams=dict(data.get("hparams") or {}),
        )


def save_trained_model(model: keras.Model, config: ClassifierConfig, directory: str) -> str:
    """Write ``config.json`` and ``weights.h5`` into ``directory``; return it."""
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, CONFIG_FILE), "w") as fh:
        fh.write(config.to_json())
    model.save_weights(os.path.join(directory, WEIGHTS_FILE), save_format="h5")
    return directory


def read_config(model_dir: str) -> ClassifierConfig:
    """The :class:`ClassifierConfig` of ``model_dir`` (or ``model_dir/keras``)."""
    with tf.io.gfile.GFile(os.path.join(resolve_model_dir(model_dir), CONFIG_FILE)) as fh:
        return ClassifierConfig.from_json(fh.read())


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The ``Dense`` layer that produces the model's logits."""
    layer = model.get_layer(model.output_names[0]) if model.output_names else model.layers[-1]
    if not isinstance(layer, keras.layers.Dense):
        raise UsageError(f"{model.name}: the output layer {layer.name} is not a Dense logits layer")
    return layer


def set_trainable(model: keras.Model, do_fine_tuning: bool) -> None:
    """Fine-tuning trains every layer; otherwise only the logits layer trains and every
    other layer, batch norms included, is frozen (they then run in inference mode)."""
    head = output_layer(model)
    for layer in model.layers:
        layer.trainable = do_fine_tuning or layer is head


def build_model(config: ClassifierConfig) -> keras.Model:
    """The untrained functional classifier ``config`` describes, with the layers that
    trained when it was trained set trainable (``do_fine_tuning``), so that QAT trains
    the same layers and keeps the frozen batch norms in inference mode."""
    spec = get_spec(config.model_name, config.image_size)
    dropout = config.hparams.get("dropout_rate", HParams.dropout_rate)
    model = spec.build(config.num_classes, dropout_rate=float(dropout))
    set_trainable(model, bool(config.hparams.get("do_fine_tuning", HParams.do_fine_tuning)))
    return model


def load_trained_model(model_dir: str) -> tuple[keras.Model, ClassifierConfig]:
    """Rebuild the classifier saved by :func:`save_trained_model` and load its weights."""
    directory = resolve_model_dir(model_dir)
    config = read_config(directory)
    model = build_model(config)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    return model, config


def load_pretrained(model: keras.Model, uri: str, model_name: str) -> int:
    """Load the ``uri`` weights into a freshly built classifier; return what was loaded.

    ``imagenet`` loads the offline ImageNet EfficientNet-Lite0..2 weights (the
    head too when the model has 1000 classes); a Keras ``.h5`` file or a
    trained-model folder loads by layer name, skipping shape mismatches; any
    other uri is a TF Hub handle / SavedModel whose variables are copied by
    name and shape. See :func:`model_maker.core.pretrained_weights.load_pretrained_weights`.
    """
    backbone = canonical_backbone(model_name) if model_name.startswith("efficientnet") else None
    return load_pretrained_weights(model, uri, backbone)
