"""KerasDetector gives the same detections as the float32 TFLite export of the same model."""

import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.litert_detector import TFLiteDetector
from model_maker.object_detector.keras_detector import KerasDetector


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from model_maker.object_detector.anchors import Anchors
    from model_maker.object_detector.export import export_tflite
    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config
    from model_maker.object_detector.model_io import TrainedModelConfig, save_trained_model

    root = tmp_path_factory.mktemp("keras")
    config = get_model_config("efficientdet-lite0", image_size=64)
    model = build_efficientdet_lite(config, num_classes=2)
    # Random weights everywhere (variances positive), so that scores differ between
    # anchors; a freshly built model scores every anchor ~0.01 (the class bias prior).
    rng = np.random.default_rng(1)
    model.set_weights(
        [
            1.0 + np.abs(rng.normal(0, 0.1, w.shape)) if "variance" in w.name
            else rng.normal(0, 0.3, w.shape)
            for w in model.weights
        ]
    )  # fmt: skip
    trained = TrainedModelConfig(
        model_name=config.model_name,
        num_classes=2,
        image_size=64,
        hparams={},
        label_map={1: "a", 2: "b"},
        model_config=config.as_dict(),
    )
    save_trained_model(model, trained, str(root / "model"))
    export_tflite(
        model,
        str(root / "float32.tflite"),
        anchors=Anchors.from_config(config),
        num_classes=2,
        nms=NMSOptions(score_threshold=1e-8),
    )
    return root


@pytest.mark.slow  # building and converting Lite0 takes minutes on the shared 2-core machine
def test_keras_and_tflite_float_agree_in_original_pixels(saved):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)  # wide: padded at the bottom
    keras_found = KerasDetector(str(saved / "model")).detect(image)
    tflite_found = TFLiteDetector(saved / "float32.tflite").detect(image)
    assert len(keras_found) == len(tflite_found) == 25
    assert np.all(keras_found.boxes_yxyx >= 0)
    assert np.all(keras_found.boxes_yxyx[:, [0, 2]] <= 48)
    assert np.all(keras_found.boxes_yxyx[:, [1, 3]] <= 96)
    assert np.ptp(keras_found.scores) > 0.05  # distinct scores, so the order is meaningful
    np.testing.assert_allclose(keras_found.scores, tflite_found.scores, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(keras_found.boxes_yxyx[:10], tflite_found.boxes_yxyx[:10], atol=0.05)
    np.testing.assert_array_equal(keras_found.classes[:10], tflite_found.classes[:10])
