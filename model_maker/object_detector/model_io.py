"""Saving and loading the trained detector: config + weights, and pretrained ``uri`` weights.

Layout written by :func:`save_trained_model` (the Trainer's Model artifact
uses it under ``keras/``)::

    <dir>/config.json   {"model_name", "num_classes", "image_size", "hparams",
                         "label_map", "model_config"}
    <dir>/weights.h5    Keras HDF5 weights of the functional detector

:func:`load_trained_model` rebuilds the exact functional model from them.

:func:`load_pretrained_weights` serves the ``uri`` argument of the spec:

* ``""``: nothing is loaded (random initialisation);
* ``"imagenet"`` (or ``"pretrained://efficientnet-liteN"``, naming the
  backbone): the offline ImageNet EfficientNet-Lite0/1/2 backbone from the
  cache that ``make pretrained`` fills (see
  :mod:`~model_maker.core.pretrained_backbone`); only the backbone
  is loaded, the BiFPN and heads keep their random initialisation. Lite3/4
  have no offline weights (``ValueError``); a missing cache raises
  ``PretrainedWeightsMissing`` naming the make target;
* a folder written by :func:`save_trained_model` (or one holding ``keras/``
  such as a Trainer Model artifact), or a Keras ``.h5`` weights file: loaded
  by layer name; layers whose shapes differ (e.g. a class head trained for
  another number of classes) are skipped;
* anything else is a TF Hub handle or SavedModel path loaded with
  ``tensorflow_hub.load``; its variables are copied onto the model's by name
  (equal names, or one name a ``/``-suffix of the other, same shape). This
  needs the hub to be reachable (or the handle to be a local/cached
  SavedModel).
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

from model_maker.core.pretrained_backbone import load_imagenet_backbone
from model_maker.core.pretrained_cache import (
    canonical_backbone,
    imagenet_backbone_name,
    is_imagenet_uri,
)
from model_maker.object_detector.model import build_efficientdet_lite
from model_maker.object_detector.model_config import get_model_config

LOG = logging.getLogger("qatflow")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.h5"
KERAS_SUBDIR = "keras"
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


def _resolve_dir(path: str) -> str:
    if tf.io.gfile.exists(os.path.join(path, CONFIG_FILE)):
        return path
    nested = os.path.join(path, KERAS_SUBDIR)
    if tf.io.gfile.exists(os.path.join(nested, CONFIG_FILE)):
        return nested
    raise FileNotFoundError(f"no {CONFIG_FILE} in {path} or {nested}")


def read_trained_config(model_dir: str) -> TrainedModelConfig:
    """The :class:`TrainedModelConfig` saved in ``model_dir`` (or ``model_dir/keras``)."""
    with tf.io.gfile.GFile(os.path.join(_resolve_dir(model_dir), CONFIG_FILE)) as fh:
        return TrainedModelConfig.from_json(fh.read())


def load_trained_model(model_dir: str) -> tuple[keras.Model, TrainedModelConfig]:
    """Rebuild the functional detector saved by :func:`save_trained_model` and load its weights.

    ``model_dir`` is the folder holding ``config.json`` or a folder with a
    ``keras/`` sub-folder (the Trainer's Model artifact).
    """
    directory = _resolve_dir(model_dir)
    config = read_trained_config(directory)
    arch = dict(config.model_config)
    name = arch.pop("model_name")
    arch.pop("backbone_name", None)
    model = build_efficientdet_lite(get_model_config(name, **arch), config.num_classes)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    return model, config


def _exists(path: str) -> bool:
    try:
        return tf.io.gfile.exists(path)
    except tf.errors.OpError:  # e.g. an http(s) handle: no TF file system for it
        return False


def _is_keras_weights(uri: str) -> str | None:
    if uri.startswith(("http://", "https://")):
        return None
    if uri.endswith((".h5", ".hdf5")) and _exists(uri):
        return uri
    for candidate in (
        os.path.join(uri, WEIGHTS_FILE),
        os.path.join(uri, KERAS_SUBDIR, WEIGHTS_FILE),
    ):
        if _exists(candidate):
            return candidate
    return None


def _strip(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def copy_variables_by_name(model: keras.Model, source: list[tf.Variable]) -> int:
    """Assign ``source`` variables onto ``model.weights`` with matching name suffix and shape.

    A model weight ``a/b/kernel`` takes the source variable whose name equals it
    or ends with ``/a/b/kernel`` (or vice versa); returns how many were assigned.
    """
    by_name = {_strip(v.name): v for v in source}
    assigned = 0
    for weight in model.weights:
        name = _strip(weight.name)
        match = by_name.get(name)
        if match is None:
            candidates = [
                v
                for key, v in by_name.items()
                if key.endswith("/" + name) or name.endswith("/" + key)
            ]
            match = candidates[0] if len(candidates) == 1 else None
        if match is not None and tuple(match.shape) == tuple(weight.shape):
            weight.assign(match)
            assigned += 1
    return assigned


def _load_hub_module(uri: str) -> Any:
    """``tensorflow_hub.load(uri)`` (a TF Hub URL, a gs:// or local SavedModel)."""
    # deferred: TF Hub loads only for a hub uri
    import tensorflow_hub as hub

    try:
        return hub.load(uri)
    except Exception as exc:  # noqa: BLE001 - hub raises many kinds of errors (network, format)
        raise ValueError(f"could not load the TF Hub handle {uri!r}: {exc}") from exc


def _module_variables(module: Any) -> list[tf.Variable]:
    """A loaded module's variables: its ``variables`` attribute (the Reusable SavedModel
    convention of TF Hub) or else every variable in its object graph."""
    listed = getattr(module, "variables", None)
    if listed:
        return list(listed)
    seen: dict[int, tf.Variable] = {}
    for obj in tf.train.TrackableView(module).descendants():
        if isinstance(obj, tf.Variable):
            seen.setdefault(id(obj), obj)
    return list(seen.values())


def _model_backbone(model: keras.Model) -> str:
    """``efficientnet-liteN`` from the name of the model's stem conv layer."""
    for layer in model.layers:
        if layer.name.startswith("efficientnet") and layer.name.endswith("_stem_conv"):
            return canonical_backbone(layer.name[: -len("_stem_conv")])
    raise ValueError(f"{model.name} has no EfficientNet backbone (no *_stem_conv layer)")


def load_pretrained_weights(model: keras.Model, uri: str, backbone_name: str | None = None) -> int:
    """Load the weights named by ``uri`` into ``model`` (see module doc); return weights loaded.

    Returns -1 when a Keras weights file was loaded by name (Keras does not
    report a count) and 0 for an empty ``uri``. ``backbone_name`` is the
    model's backbone for the ImageNet route (read from the layer names if None).

    Raises:
      ValueError: the handle could not be loaded or no variable matched; an
        ImageNet uri for a backbone without offline weights.
      PretrainedWeightsMissing: an ImageNet uri and no cache (run ``make pretrained``).
    """
    if not uri:
        LOG.info("no pretrained uri: the detector starts from random initialisation")
        return 0
    if is_imagenet_uri(uri):
        name = imagenet_backbone_name(uri, backbone_name or _model_backbone(model))
        return load_imagenet_backbone(model, name).variables
    weights_file = _is_keras_weights(uri)
    if weights_file:
        model.load_weights(weights_file, by_name=True, skip_mismatch=True)
        LOG.info("loaded weights by layer name from %s", weights_file)
        return -1
    module = _load_hub_module(uri)
    variables = _module_variables(module)
    assigned = copy_variables_by_name(model, variables)
    if not assigned:
        raise ValueError(
            f"{uri}: none of its {len(variables)} variables matched the model's by name and shape"
        )
    LOG.info("loaded %d of %d model weights from %s", assigned, len(model.weights), uri)
    return assigned
