"""Pretrained weights for a model from a ``uri``: offline ImageNet, Keras weights, TF Hub.

:func:`load_pretrained_weights` serves the ``uri`` of both tasks' specs:

* ``""``: nothing is loaded (random initialisation);
* ``"imagenet"`` (or ``"pretrained://efficientnet-liteN"``, naming the
  backbone): the offline ImageNet EfficientNet-Lite0/1/2 weights from the
  cache that ``make pretrained`` fills
  (:mod:`~model_maker.core.pretrained_backbone`): a detector's backbone, or a
  classifier's backbone and head (the head only at 1000 classes);
* a folder holding ``weights.h5`` or ``keras/weights.h5`` (a trained-model
  folder), or a Keras ``.h5`` weights file: loaded by layer name; layers
  whose shapes differ (e.g. a class head for another number of classes) are
  skipped;
* anything else is a TF Hub handle or SavedModel path loaded with
  ``tensorflow_hub.load``; its variables are copied onto the model's by name
  (equal names, or one name a ``/``-suffix of the other, same shape). This
  needs the hub to be reachable (or the handle to be a local/cached
  SavedModel).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.model_folder import KERAS_SUBDIR, WEIGHTS_FILE
from model_maker.core.pretrained_backbone import load_imagenet_backbone
from model_maker.core.pretrained_cache import (
    canonical_backbone,
    imagenet_backbone_name,
    is_imagenet_uri,
)

LOG = logging.getLogger("qatflow")


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
        LOG.info("no pretrained uri: %s starts from random initialisation", model.name)
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
