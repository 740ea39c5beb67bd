"""EfficientNet-Lite0..4 classifiers: the detector's backbone plus its ImageNet head.

Built by :func:`model_maker.core.efficientnet_lite.build_efficientnet_lite_classifier`
(imported, not copied): ``input_normalization``, the backbone with the
detector's layer names, ``<p>_head_conv`` (1x1, 1280) + BN + ReLU6, average
pooling, dropout and ``<p>_logits`` (``<p>`` = ``efficientnet_lite0``..). The
same names are what the offline ImageNet weights load onto
(``object_detector.pretrained_backbone``). EfficientNet-Lite0 at 224 px with
1000 classes has 4,652,008 trainable parameters (the published 4.7 M, counted
as PyTorch does, without BN moving statistics) and 4,694,024 in all.
"""

from __future__ import annotations

import tf_keras as keras

# The one import from the detector package (the brief of issue 15: reuse, do not copy);
# tests/test_layering.py flags it until efficientnet_lite.py moves to model_maker/core.
from model_maker.core.efficientnet_lite import build_efficientnet_lite_classifier


def build_efficientnet_lite(
    num_classes: int,
    image_size: int = 224,
    *,
    backbone_name: str = "efficientnet-lite0",
    dropout_rate: float = 0.2,
    mean_rgb: float = 127.0,
    stddev_rgb: float = 128.0,
) -> keras.Model:
    """EfficientNet-Lite ``backbone_name`` for ``num_classes`` classes.

    Args:
      num_classes: outputs of the logits layer.
      image_size: square input size in pixels.
      backbone_name: ``efficientnet-lite0`` .. ``efficientnet-lite4``.
      dropout_rate: dropout before the logits layer (training only).
      mean_rgb: pixel mean subtracted by the first layer (127 for the ImageNet weights).
      stddev_rgb: pixel scale divided by the first layer (128 for the ImageNet weights).

    Returns:
      ``images [B, S, S, 3] float32 0..255 -> logits [B, num_classes]``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return build_efficientnet_lite_classifier(
        backbone_name,
        image_size,
        num_classes,
        dropout_rate=dropout_rate,
        mean_rgb=mean_rgb,
        stddev_rgb=stddev_rgb,
    )
