"""Multi-level anchor boxes of EfficientDet (automl's ``Anchors``).

Order (the model's output order): level min..max; within a level row-major
over the feature map (y, then x); within a position scale octave major,
aspect ratio minor. Feature sizes use ceil at every halving
(``(s - 1) // 2 + 1``), as automl's ``get_feat_sizes``: Lite0 at 320 has maps
40/20/10/5/3 and 19,206 anchors.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from model_maker.object_detector.model_config import EfficientDetLiteConfig


def feature_sizes(image_size: int | Sequence[int], max_level: int) -> list[tuple[int, int]]:
    """(height, width) of levels 0..max_level (level 0 is the image)."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    sizes = [(int(height), int(width))]
    for _ in range(max_level):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        sizes.append((height, width))
    return sizes


class Anchors:
    """Anchor boxes for one input size.

    Args:
      min_level: finest level.
      max_level: coarsest level.
      num_scales: scales per octave.
      aspect_ratios: width/height ratios.
      anchor_scale: anchor size in units of the level's stride.
      image_size: input size (int for square, or (height, width)).

    Attributes:
      boxes_yxyx: np.float32 [A, 4] (ymin, xmin, ymax, xmax) in pixels; boxes
        may extend past the image border (they are not clipped).
      feature_sizes: {level: (height, width)} for min..max level.
      anchors_per_location: num_scales * len(aspect_ratios).
      num_anchors: A.
    """

    def __init__(
        self,
        min_level: int = 3,
        max_level: int = 7,
        num_scales: int = 3,
        aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
        anchor_scale: float = 4.0,
        image_size: int | Sequence[int] = 512,
    ) -> None:
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_scales = int(num_scales)
        self.aspect_ratios = tuple(float(a) for a in aspect_ratios)
        self.anchor_scale = float(anchor_scale)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        all_sizes = feature_sizes(self.image_size, self.max_level)
        self.feature_sizes: dict[int, tuple[int, int]] = {
            level: all_sizes[level] for level in range(self.min_level, self.max_level + 1)
        }
        self.anchors_per_location = self.num_scales * len(self.aspect_ratios)
        self.boxes_yxyx = self._generate()
        self.num_anchors = int(self.boxes_yxyx.shape[0])

    @classmethod
    def from_config(cls, config: EfficientDetLiteConfig) -> Anchors:
        """The anchors of a model config at its ``image_size``."""
        return cls(
            config.min_level,
            config.max_level,
            config.num_scales,
            config.aspect_ratios,
            config.anchor_scale,
            config.image_size,
        )

    def _generate(self) -> np.ndarray:
        image_h, image_w = self.image_size
        per_level = []
        for feat_h, feat_w in self.feature_sizes.values():
            stride_y, stride_x = image_h / feat_h, image_w / feat_w
            yc = (np.arange(feat_h, dtype=np.float64) + 0.5) * stride_y
            xc = (np.arange(feat_w, dtype=np.float64) + 0.5) * stride_x
            yv, xv = np.meshgrid(yc, xc, indexing="ij")
            yv, xv = yv.reshape(-1, 1), xv.reshape(-1, 1)
            boxes = []
            for octave, aspect in itertools.product(range(self.num_scales), self.aspect_ratios):
                scale = self.anchor_scale * 2.0 ** (octave / self.num_scales)
                aspect_x = np.sqrt(aspect)
                half_h = scale * stride_y / aspect_x / 2.0
                half_w = scale * stride_x * aspect_x / 2.0
                boxes.append(
                    np.concatenate([yv - half_h, xv - half_w, yv + half_h, xv + half_w], 1)
                )
            # [positions, anchors_per_location, 4] -> position major, anchor minor.
            per_level.append(np.stack(boxes, axis=1).reshape(-1, 4))
        return np.concatenate(per_level, axis=0).astype(np.float32)

    def level_slices(self) -> dict[int, slice]:
        """Rows of ``boxes_yxyx`` belonging to each level."""
        out, start = {}, 0
        for level, (h, w) in self.feature_sizes.items():
            count = h * w * self.anchors_per_location
            out[level] = slice(start, start + count)
            start += count
        return out

    def boxes_normalized_yxyx(self) -> np.ndarray:
        """np.float32 [A, 4] (ymin, xmin, ymax, xmax) divided by the image size."""
        image_h, image_w = self.image_size
        scale = np.array([image_h, image_w, image_h, image_w], np.float64)
        return (self.boxes_yxyx.astype(np.float64) / scale).astype(np.float32)

    def centers_yxhw_normalized(self) -> np.ndarray:
        """np.float32 [A, 4] (yc, xc, h, w) normalised to 0..1 (the TFLite post-processing op's)."""
        boxes = self.boxes_normalized_yxyx().astype(np.float64)
        height = boxes[:, 2] - boxes[:, 0]
        width = boxes[:, 3] - boxes[:, 1]
        yc = boxes[:, 0] + height / 2.0
        xc = boxes[:, 1] + width / 2.0
        return np.stack([yc, xc, height, width], axis=1).astype(np.float32)
