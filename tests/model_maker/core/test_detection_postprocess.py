"""TFLite_Detection_PostProcess fused into a tiny detector, run in LiteRT."""

import math

import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions, PostProcessParams
from model_maker.core.errors import SettingsError
from tests.model_maker.core.detector_fixtures import (
    GridDetectorSpec,
    build_grid_detector,
)

SPEC = GridDetectorSpec(image_size=32, grid=4, num_classes=2, max_detections=10)


def _encodings() -> np.ndarray:
    enc = np.zeros((16, 4), np.float32)
    enc[1] = [0.0, -1.0, 0.0, 0.0]  # anchor (row 0, col 1) moved onto anchor 0: IoU 1
    enc[8] = [0.2, 0.1, math.log(1.5), math.log(0.5)]  # anchor (row 2, col 0)
    return enc


def _image() -> np.ndarray:
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[0, 0:8, 0:8, 0] = 255  # cell 0, class 0, score sigmoid(10)
    image[0, 0:8, 8:16, 0] = 200  # cell 1, class 0, lower score: suppressed by cell 0
    image[0, 16:24, 0:8, 1] = 230  # cell 8, class 1
    return image


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def outputs():
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=build_grid_detector(SPEC, encodings=_encodings()))
    runner = interpreter.get_signature_runner("serving_default")
    return interpreter, runner(images=_image())


def test_nodedef_keeps_small_thresholds_and_fixed_attributes():
    text = PostProcessParams(
        num_classes=3, nms=NMSOptions(max_detections=7, score_threshold=1e-8)
    ).implements_signature()
    assert text.startswith('name: "TFLite_Detection_PostProcess"')
    assert 'key: "nms_score_threshold" value { f: 1e-08 }' in text
    assert 'key: "max_detections" value { i: 7 }' in text
    assert 'key: "num_classes" value { i: 3 }' in text
    assert 'key: "use_regular_nms" value { b: false }' in text
    assert 'key: "max_classes_per_detection" value { i: 1 }' in text
    for key in ("y_scale", "x_scale", "h_scale", "w_scale"):
        assert f'key: "{key}" value {{ f: 1.0 }}' in text


def test_invalid_params_are_rejected():
    with pytest.raises(SettingsError, match="num_classes"):
        PostProcessParams(num_classes=0)
    with pytest.raises(SettingsError, match="iou_threshold"):
        PostProcessParams(num_classes=1, nms=NMSOptions(iou_threshold=1.5))


def test_op_is_fused_with_named_outputs(outputs):
    interpreter, out = outputs
    signature = interpreter.get_signature_list()["serving_default"]
    assert sorted(signature["outputs"]) == ["boxes", "classes", "num_detections", "scores"]
    assert out["boxes"].shape == (1, 10, 4)
    assert out["classes"].shape == (1, 10)
    assert out["scores"].shape == (1, 10)
    assert out["num_detections"].shape == (1,)
    assert all(v.dtype == np.float32 for v in out.values())


def test_decoding_nms_and_sorting_match_hand_computation(outputs):
    _, out = outputs
    # Cell 1 (score sigmoid(20 * (200/255 - 0.5))) decodes onto cell 0 and is suppressed.
    assert int(out["num_detections"][0]) == 2
    classes = out["classes"][0, :2]
    scores = out["scores"][0, :2]
    np.testing.assert_array_equal(classes, [0.0, 1.0])  # 0-based, integral
    np.testing.assert_allclose(
        scores, [_sigmoid(10.0), _sigmoid(20 * (230 / 255 - 0.5))], rtol=1e-5
    )
    assert scores[0] >= scores[1]
    np.testing.assert_allclose(out["boxes"][0, 0], [0.0, 0.0, 0.25, 0.25], atol=1e-6)
    # anchor 8: yc 0.625, xc 0.125, h = w = 0.25; ty 0.2, tx 0.1, th log 1.5, tw log 0.5
    yc, xc, h, w = 0.625 + 0.2 * 0.25, 0.125 + 0.1 * 0.25, 0.25 * 1.5, 0.25 * 0.5
    expected = [yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2]
    np.testing.assert_allclose(out["boxes"][0, 1], expected, atol=1e-6)
