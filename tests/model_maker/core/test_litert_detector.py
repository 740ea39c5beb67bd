"""TFLiteDetector: output lookup, input quantisation, resize-and-pad back to pixels."""

import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import DataError
from model_maker.core.litert_detector import (
    Detections,
    TFLiteDetector,
    measure_latency,
    resize_and_pad,
)
from tests.model_maker.core.detector_fixtures import (
    GridDetectorSpec,
    build_grid_detector,
    grid_anchors,
)

SPEC = GridDetectorSpec(image_size=32, grid=4, num_classes=2, max_detections=10)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, kwargs in {
        "float32": {},
        "ptq_int8": {"int8": True},
        "raw": {"with_nms": False},
    }.items():
        path = root / f"{name}.tflite"
        path.write_bytes(build_grid_detector(SPEC, **kwargs))
        paths[name] = path
    anchors = root / "anchors.npy"
    np.save(anchors, grid_anchors(SPEC.grid))
    paths["anchors"] = anchors
    return paths


def _wide_image() -> np.ndarray:
    # 32 x 64 image: scale 0.5 onto the 32 x 32 input, padded at the bottom.
    # A model cell (8 px) is 16 image px.
    image = np.zeros((32, 64, 3), np.uint8)
    image[0:16, 16:32] = (255, 0, 0)  # class 0 at x 16..32, y 0..16
    image[16:32, 48:64] = (0, 255, 0)  # class 1 at x 48..64, y 16..32
    return image


def _check_wide(found: Detections) -> None:
    assert len(found) == 2
    order = np.argsort(found.classes)
    np.testing.assert_array_equal(found.classes[order], [0, 1])
    np.testing.assert_allclose(
        found.boxes_yxyx[order], [[0, 16, 16, 32], [16, 48, 32, 64]], atol=0.5
    )
    assert np.all(found.scores > 0.99)
    assert np.all(np.diff(found.scores) <= 0)


def test_float_model_maps_boxes_back_to_original_pixels(models):
    detector = TFLiteDetector(models["float32"])
    assert detector.with_nms and detector.input_dtype == np.float32
    assert (detector.input_height, detector.input_width) == (32, 32)
    _check_wide(detector.detect(_wide_image()))


def test_uint8_model_gets_quantised_input(models):
    detector = TFLiteDetector(models["ptq_int8"])
    assert detector.input_dtype == np.uint8
    model_input, scale = detector.preprocess(_wide_image())
    assert model_input.dtype == np.uint8 and model_input.shape == (1, 32, 32, 3)
    assert scale == 0.5
    # The bottom half is padding (0) and the red cell keeps 255 after quantisation.
    assert model_input[0, 16:].max() == 0
    assert model_input[0, 0:8, 8:16, 0].min() >= 250
    _check_wide(detector.detect(_wide_image()))


def test_raw_model_with_anchors_matches_the_op(models):
    raw = TFLiteDetector(
        models["raw"],
        anchors=models["anchors"],
        nms=NMSOptions(max_detections=10, score_threshold=SPEC.score_threshold),
    )
    assert not raw.with_nms
    found = raw.detect(_wide_image())
    _check_wide(found)
    fused = TFLiteDetector(models["float32"]).detect(_wide_image())
    np.testing.assert_allclose(found.boxes_yxyx, fused.boxes_yxyx, atol=1e-4)
    np.testing.assert_allclose(found.scores, fused.scores, rtol=1e-4)


def test_raw_model_without_anchors_is_refused(models):
    with pytest.raises(DataError, match="anchors"):
        TFLiteDetector(models["raw"])


def test_to_coco_converts_yxyx_to_xywh_and_1_based_ids():
    found = Detections(
        np.array([[10.0, 20.0, 30.0, 60.0]], np.float32),
        np.array([0], np.int32),
        np.array([0.9], np.float32),
    )
    (det,) = found.to_coco(image_id=7)
    assert det == {
        "image_id": 7,
        "category_id": 1,
        "bbox": [20.0, 10.0, 40.0, 20.0],
        "score": pytest.approx(0.9),
    }


def test_resize_and_pad_keeps_aspect_and_pads_bottom_right():
    image = np.full((10, 40, 3), 200, np.uint8)
    out, scale = resize_and_pad(image, 20, 20)
    assert scale == 0.5
    assert out.shape == (20, 20, 3)
    np.testing.assert_allclose(out[:5], 200.0)
    np.testing.assert_allclose(out[5:], 0.0)


def test_latency_is_median_and_p90_of_the_timed_runs(models, monkeypatch):
    import model_maker.core.litert_detector as module

    # Runs of 10, 1, 2, ..., 9 ms (start/stop pairs): median 5.5, p90 9 (9th of 10 sorted).
    durations = [10, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    ticks = iter([t for d in durations for t in (0.0, d / 1000.0)])
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(ticks))
    calls = []
    stats = measure_latency(lambda: calls.append(1), runs=10, warmup=2)
    assert len(calls) == 12
    assert stats.median_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.0)
    monkeypatch.undo()
    latency = TFLiteDetector(models["float32"]).latency(runs=5)
    assert latency.runs == 5 and latency.num_threads == 1
    assert 0 < latency.median_ms <= latency.p90_ms


def test_bad_model_file_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(DataError, match="cannot load"):
        TFLiteDetector(bad)


def test_outputs_without_signature_are_matched_by_shape_and_op_output_names():
    shapes = {7: (1, 10, 4), 8: (1, 10), 9: (1, 10), 10: (1,)}
    names = {
        "TFLite_Detection_PostProcess": 7,
        "TFLite_Detection_PostProcess:2": 8,
        "TFLite_Detection_PostProcess:1": 9,
        "TFLite_Detection_PostProcess:3": 10,
    }
    found = TFLiteDetector._outputs_by_shape(names, shapes)
    assert (found.boxes, found.classes, found.scores, found.num) == (7, 9, 8, 10)
    unnamed = TFLiteDetector._outputs_by_shape({"a": 7, "b": 8, "c": 9, "d": 10}, shapes)
    assert unnamed.boxes == 7 and unnamed.num == 10 and sorted(unnamed.ambiguous) == [8, 9]
    with pytest.raises(DataError, match="by shape"):
        TFLiteDetector._outputs_by_shape({"a": 7, "b": 8}, {7: (1, 10, 4), 8: (1, 10)})


def test_model_and_anchors_read_from_a_beam_filesystem_uri(models, mem):
    # On Kubeflow the TFLite artifact is on gs://; the interpreter only opens local files.
    from model_maker.core.data import fileio

    remote = {}
    for name in ("float32", "raw", "anchors"):
        remote[name] = fileio.join(mem, models[name].name)
        fileio.write_bytes(remote[name], models[name].read_bytes())
    local = TFLiteDetector(models["float32"]).detect(_wide_image())
    found = TFLiteDetector(remote["float32"]).detect(_wide_image())
    _check_wide(found)
    np.testing.assert_array_equal(found.boxes_yxyx, local.boxes_yxyx)
    raw = TFLiteDetector(
        remote["raw"],
        anchors=remote["anchors"],
        nms=NMSOptions(max_detections=10, score_threshold=SPEC.score_threshold),
    )
    np.testing.assert_allclose(raw.detect(_wide_image()).boxes_yxyx, local.boxes_yxyx, atol=1e-4)
    assert raw.path == remote["raw"]
