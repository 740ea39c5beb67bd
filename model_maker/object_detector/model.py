"""EfficientDet-Lite as one functional tf_keras model.

Input: [B, H, W, 3] float32 raw pixels 0..255 (the (x - 127) / 128
normalisation is the model's first layer, so exported models take pixels).
Outputs, concatenated over levels min..max in the order of
:class:`~model_maker.object_detector.anchors.Anchors`:

- ``class_logits`` [B, A, num_classes]: raw logits (sigmoid in post-processing),
- ``box_encodings`` [B, A, 4]: (ty, tx, th, tw) relative to the anchors, see
  :mod:`~model_maker.core.box_coder`.

The graph is plain Keras layers (no nested models, no TFOpLambda) except
:class:`NearestUpsampling`, so TFMOT and the TFLite converter can walk it.
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow as tf
import tf_keras as keras

from model_maker.core.efficientnet_lite import build_efficientnet_lite
from model_maker.object_detector.bifpn import build_bifpn, build_extra_levels
from model_maker.object_detector.heads import build_box_net, build_class_net
from model_maker.object_detector.model_config import EfficientDetLiteConfig
from model_maker.object_detector.nearest_upsampling import NearestUpsampling

INPUT_NAME = "images"
CLASS_OUTPUT = "class_logits"
BOX_OUTPUT = "box_encodings"

# Layer-name patterns of the model's parts (the freeze regex relies on them).
PART_PATTERNS: dict[str, str] = {
    "backbone": r"^efficientnet",
    "fpn": r"^(fpn_cells|resample_p\d)",
    "class_net": r"^class_net",
    "box_net": r"^box_net",
}


def custom_objects() -> dict[str, Any]:
    """Custom layers needed by ``keras.models.load_model``/``clone_model``."""
    return {"NearestUpsampling": NearestUpsampling}


@tf.autograph.experimental.do_not_convert  # no AutoGraph for the custom layers: Python control flow
def build_efficientdet_lite(
    config: EfficientDetLiteConfig,
    num_classes: int,
    batch_size: int | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build EfficientDet-Lite for ``num_classes`` classes at ``config.image_size``.

    Args:
      config: architecture, see :func:`get_model_config`.
      num_classes: number of object classes (no background class).
      batch_size: fixed batch dimension, or None for any.
      name: model name; defaults to ``config.model_name`` with ``_``.

    Returns:
      A functional model: images [B, S, S, 3] float32 pixels 0..255 ->
      [class_logits [B, A, num_classes], box_encodings [B, A, 4]].
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    size = config.image_size
    images = keras.Input((size, size, 3), batch_size=batch_size, name=INPUT_NAME)
    x = keras.layers.Rescaling(
        1.0 / config.stddev_rgb,
        offset=-config.mean_rgb / config.stddev_rgb,
        name="input_normalization",
    )(images)
    backbone = build_efficientnet_lite(
        x,
        config.backbone_name,
        width_coefficient=config.width_coefficient,
        depth_coefficient=config.depth_coefficient,
        depth_divisor=config.depth_divisor,
        bn_momentum=config.bn_momentum,
        bn_epsilon=config.bn_epsilon,
    )
    bn = {"bn_momentum": config.bn_momentum, "bn_epsilon": config.bn_epsilon}
    feats = {level: backbone[level] for level in range(config.min_level, 6)}
    feats = build_extra_levels(feats, config.max_level, config.fpn_num_filters, **bn)
    feats = build_bifpn(
        feats, config.min_level, config.max_level, config.fpn_num_filters,
        config.fpn_cell_repeats, **bn,
    )  # fmt: skip
    levels = list(config.levels)
    per_level = [feats[level] for level in levels]
    num_anchors = config.num_anchors_per_location
    class_maps = build_class_net(
        per_level, levels, num_classes, num_anchors, config.fpn_num_filters,
        config.box_class_repeats, **bn,
    )  # fmt: skip
    box_maps = build_box_net(
        per_level, levels, num_anchors, config.fpn_num_filters, config.box_class_repeats, **bn
    )
    class_flat = [
        keras.layers.Reshape((-1, num_classes), name=f"class_logits_p{level}")(m)
        for m, level in zip(class_maps, levels, strict=True)
    ]
    box_flat = [
        keras.layers.Reshape((-1, 4), name=f"box_encodings_p{level}")(m)
        for m, level in zip(box_maps, levels, strict=True)
    ]
    class_logits = keras.layers.Concatenate(axis=1, name=CLASS_OUTPUT)(class_flat)
    box_encodings = keras.layers.Concatenate(axis=1, name=BOX_OUTPUT)(box_flat)
    return keras.Model(
        images,
        [class_logits, box_encodings],
        name=name or config.model_name.replace("-", "_"),
    )


def _weight_count(weights: list[tf.Variable]) -> int:
    return int(sum(int(tf.size(w)) for w in weights))


def count_params(model: keras.Model) -> dict[str, int]:
    """Parameter counts: total, trainable, and per part (backbone, fpn, class_net, box_net).

    Counts include batch-norm moving statistics (as ``model.count_params()``).
    """
    out = {
        "total": _weight_count(model.weights),
        "trainable": _weight_count(model.trainable_weights),
    }
    for part, pattern in PART_PATTERNS.items():
        regex = re.compile(pattern)
        out[part] = _weight_count([w for w in model.weights if regex.search(w.name)])
    return out
