"""BiFPN feature network of EfficientDet-Lite (plain-sum fusion, ReLU6, separable convs).

Layer names follow automl's variable scopes, so the default freeze regex
``(efficientnet|fpn_cells|resample_p6)`` means the same thing here: the extra
P6 level made from P5 lives under ``resample_p6_*``, P7 is a parameter-free
max-pool (``resample_p7_*``), every BiFPN layer is named ``fpn_cells_*``.

The node graph is automl's ``bifpn_config``: a top-down pass (each level fused
with the upsampled level above), then a bottom-up pass (each level fused with
all its earlier nodes and the downsampled level below). Each fusion is a sum,
then ReLU6, a 3x3 separable conv (depthwise + 1x1 with bias) and batch norm.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tf_keras as keras

from model_maker.object_detector.nearest_upsampling import NearestUpsampling


def bifpn_nodes(min_level: int, max_level: int) -> list[tuple[int, tuple[int, ...]]]:
    """The BiFPN nodes as (level, input offsets), offsets indexing the growing node list.

    Offsets 0..num_levels-1 are the input levels min_level..max_level; each
    node appends one entry.
    """
    num_levels = max_level - min_level + 1
    node_ids = {min_level + i: [i] for i in range(num_levels)}
    next_id = num_levels
    nodes: list[tuple[int, tuple[int, ...]]] = []
    for level in range(max_level - 1, min_level - 1, -1):  # top-down
        nodes.append((level, (node_ids[level][-1], node_ids[level + 1][-1])))
        node_ids[level].append(next_id)
        next_id += 1
    for level in range(min_level + 1, max_level + 1):  # bottom-up
        nodes.append((level, (*node_ids[level], node_ids[level - 1][-1])))
        node_ids[level].append(next_id)
        next_id += 1
    return nodes


def _spatial(x: tf.Tensor) -> tuple[int, int]:
    return int(x.shape[1]), int(x.shape[2])


def resample(
    x: tf.Tensor,
    target_hw: tuple[int, int],
    num_filters: int,
    name: str,
    bn_momentum: float,
    bn_epsilon: float,
) -> tf.Tensor:
    """1x1 conv + BN when the channels differ, then max-pool down or nearest-upsample."""
    if int(x.shape[-1]) != num_filters:
        x = keras.layers.Conv2D(num_filters, 1, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn"
        )(x)
    height, width = _spatial(x)
    target_h, target_w = target_hw
    if height > target_h and width > target_w:
        stride_h = (height - 1) // target_h + 1
        stride_w = (width - 1) // target_w + 1
        x = keras.layers.MaxPooling2D(
            pool_size=(stride_h + 1, stride_w + 1),
            strides=(stride_h, stride_w),
            padding="same",
            name=f"{name}_maxpool",
        )(x)
    elif height < target_h and width < target_w:
        scale = max((target_h + height - 1) // height, (target_w + width - 1) // width)
        x = NearestUpsampling(target_size=target_hw, scale=scale, name=f"{name}_upsample")(x)
    elif (height, width) != (target_h, target_w):
        raise ValueError(f"{name}: cannot resample {height}x{width} to {target_h}x{target_w}")
    if _spatial(x) != tuple(target_hw):
        raise ValueError(f"{name}: resampled to {_spatial(x)}, expected {target_hw}")
    return x


def build_extra_levels(
    features: Mapping[int, tf.Tensor],
    max_level: int,
    num_filters: int,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
) -> dict[int, tf.Tensor]:
    """Levels above the backbone's last (6..max_level), each a stride-2 max-pool of the one below.

    The first one also maps the channels to ``num_filters`` (``resample_p6_conv``/``_bn``).
    """
    out = dict(features)
    for level in range(max(out) + 1, max_level + 1):
        below = out[level - 1]
        height, width = _spatial(below)
        out[level] = resample(
            below,
            ((height + 1) // 2, (width + 1) // 2),
            num_filters,
            f"resample_p{level}",
            bn_momentum,
            bn_epsilon,
        )
    return out


def _fuse(
    inputs: list[tf.Tensor], num_filters: int, name: str, bn_momentum: float, bn_epsilon: float
) -> tf.Tensor:
    x = keras.layers.Add(name=f"{name}_add")(inputs)
    x = keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
    x = keras.layers.Conv2D(num_filters, 1, padding="same", name=f"{name}_pointwise")(x)
    return keras.layers.BatchNormalization(
        momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn"
    )(x)


def build_bifpn(
    features: Mapping[int, tf.Tensor],
    min_level: int,
    max_level: int,
    num_filters: int,
    num_cells: int,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    name: str = "fpn_cells",
) -> dict[int, tf.Tensor]:
    """Apply ``num_cells`` BiFPN cells to ``features`` (level -> map for min..max level).

    Returns:
      level -> [B, H_l, W_l, num_filters] for min_level..max_level.
    """
    levels = list(range(min_level, max_level + 1))
    missing = [level for level in levels if level not in features]
    if missing:
        raise ValueError(f"build_bifpn: feature levels {missing} missing (have {sorted(features)})")
    if "fpn_cells" not in name:
        raise ValueError(f"BiFPN name {name!r} must contain 'fpn_cells' (the freeze regex uses it)")
    nodes = bifpn_nodes(min_level, max_level)
    feats = {level: features[level] for level in levels}
    for cell in range(num_cells):
        all_nodes = [feats[level] for level in levels]
        for index, (level, offsets) in enumerate(nodes):
            node_name = f"{name}_cell{cell}_fnode{index}"
            target_hw = _spatial(feats[level])
            inputs = [
                resample(
                    all_nodes[offset],
                    target_hw,
                    num_filters,
                    f"{node_name}_resample{i}_{offset}",
                    bn_momentum,
                    bn_epsilon,
                )
                for i, offset in enumerate(offsets)
            ]
            all_nodes.append(_fuse(inputs, num_filters, node_name, bn_momentum, bn_epsilon))
        # Each level's output is its last node.
        new_feats = {}
        for level in levels:
            last = max(i for i, (lvl, _) in enumerate(nodes) if lvl == level)
            new_feats[level] = all_nodes[len(levels) + last]
        feats = new_feats
    return feats
