import itertools

import numpy as np
import pytest

from model_maker.object_detector.anchors import Anchors, feature_sizes
from model_maker.object_detector.model_config import get_model_config


def _automl_style(min_level, max_level, num_scales, aspect_ratios, anchor_scale, size):
    """Anchors written the way automl's anchors.py builds them (np.arange grid per config)."""
    sizes = [size]
    for _ in range(max_level):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    out = []
    for level in range(min_level, max_level + 1):
        stride = size / sizes[level]
        per_config = []
        for octave, aspect in itertools.product(range(num_scales), aspect_ratios):
            base = anchor_scale * stride * 2 ** (octave / num_scales)
            ax, ay = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
            x = np.arange(stride / 2, size, stride)
            y = np.arange(stride / 2, size, stride)
            xv, yv = np.meshgrid(x, y)
            xv, yv = xv.reshape(-1), yv.reshape(-1)
            hx, hy = base * ax / 2, base * ay / 2
            boxes = np.vstack((yv - hy, xv - hx, yv + hy, xv + hx)).T
            per_config.append(boxes[:, None, :])
        out.append(np.concatenate(per_config, axis=1).reshape(-1, 4))
    return np.concatenate(out)


def test_lite0_at_320_has_19206_anchors():
    anchors = Anchors.from_config(get_model_config("efficientdet-lite0"))
    assert anchors.feature_sizes == {3: (40, 40), 4: (20, 20), 5: (10, 10), 6: (5, 5), 7: (3, 3)}
    assert anchors.anchors_per_location == 9
    assert anchors.num_anchors == 19206
    assert anchors.boxes_yxyx.shape == (19206, 4)
    assert anchors.boxes_yxyx.dtype == np.float32


def test_feature_sizes_use_ceil():
    assert feature_sizes(320, 7)[3:] == [(40, 40), (20, 20), (10, 10), (5, 5), (3, 3)]
    assert feature_sizes(448, 7)[3:] == [(56, 56), (28, 28), (14, 14), (7, 7), (4, 4)]
    assert feature_sizes((256, 384), 7)[7] == (2, 3)
    assert (
        Anchors(anchor_scale=3.0, image_size=256).num_anchors
        == (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2) * 9
    )


def test_first_anchors_by_hand():
    boxes = Anchors(anchor_scale=3.0, image_size=320).boxes_yxyx
    # level 3: stride 8, first centre (4, 4); scale 1, aspect 1: side 3 * 8 = 24.
    np.testing.assert_allclose(boxes[0], [-8, -8, 16, 16], atol=1e-5)
    # aspect 2.0: width 24 * sqrt(2), height 24 / sqrt(2).
    half_w, half_h = 12 * np.sqrt(2), 12 / np.sqrt(2)
    np.testing.assert_allclose(
        boxes[1], [4 - half_h, 4 - half_w, 4 + half_h, 4 + half_w], atol=1e-5
    )
    # octave 1 (index 3): side 24 * 2 ** (1 / 3).
    half = 12 * 2 ** (1 / 3)
    np.testing.assert_allclose(boxes[3], [4 - half, 4 - half, 4 + half, 4 + half], atol=1e-5)
    # index 9: next position along x, centre (4, 12).
    np.testing.assert_allclose(boxes[9], [-8, 0, 16, 24], atol=1e-5)
    # index 40 * 9: second row, centre (12, 4).
    np.testing.assert_allclose(boxes[360], [0, -8, 24, 16], atol=1e-5)
    # first anchor of level 7 at 320: stride 320 / 3, centre (53.33, 53.33), side 320.
    c = 320 / 3 / 2
    np.testing.assert_allclose(boxes[19206 - 81], [c - 160, c - 160, c + 160, c + 160], atol=1e-4)


@pytest.mark.parametrize("size,scale", [(320, 3.0), (448, 3.0), (512, 4.0), (256, 3.0)])
def test_matches_automl_construction(size, scale):
    anchors = Anchors(3, 7, 3, (1.0, 2.0, 0.5), scale, size)
    expected = _automl_style(3, 7, 3, (1.0, 2.0, 0.5), scale, size)
    np.testing.assert_allclose(anchors.boxes_yxyx, expected, rtol=1e-6, atol=1e-4)


def test_normalised_centres_for_the_tflite_op():
    anchors = Anchors(anchor_scale=3.0, image_size=320)
    centres = anchors.centers_yxhw_normalized()
    assert centres.shape == (19206, 4) and centres.dtype == np.float32
    np.testing.assert_allclose(centres[0], [4 / 320, 4 / 320, 24 / 320, 24 / 320], atol=1e-7)
    boxes = anchors.boxes_normalized_yxyx()
    np.testing.assert_allclose(centres[:, 2], boxes[:, 2] - boxes[:, 0], atol=1e-6)
    np.testing.assert_allclose(centres[:, 1], (boxes[:, 1] + boxes[:, 3]) / 2, atol=1e-6)


def test_level_slices_partition_the_anchors():
    anchors = Anchors(anchor_scale=3.0, image_size=320)
    slices = anchors.level_slices()
    assert [s.stop - s.start for s in slices.values()] == [14400, 3600, 900, 225, 81]
    assert slices[7].stop == anchors.num_anchors
