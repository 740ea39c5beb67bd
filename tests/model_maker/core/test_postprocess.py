import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.postprocess import postprocess_global, postprocess_per_class

# a 100 x 100 image; a0 and a1 overlap with IoU 2250 / 2750 = 0.818
ANCHORS = np.array([[0, 0, 50, 50], [0, 5, 50, 55], [60, 60, 90, 90], [0, 60, 30, 90]], np.float32)
LOGITS = np.array([[[2.0, -5.0], [-5.0, 3.0], [-1.0, -4.0], [-10.0, -10.0]]], np.float32)
ZERO_CODES = np.zeros([1, 4, 4], np.float32)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_global_nms_is_class_agnostic_and_sorted():
    boxes, classes, scores, num = postprocess_global(
        LOGITS, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(max_detections=5, score_threshold=0.1)
    )
    assert boxes.shape == (1, 5, 4) and classes.shape == (1, 5) and num.shape == (1,)
    assert int(num[0]) == 2  # a0 suppressed by a1 despite another class; a3 below threshold
    np.testing.assert_allclose(boxes[0, :2], ANCHORS[[1, 2]] / 100, atol=1e-6)
    np.testing.assert_array_equal(classes[0, :2], [1.0, 0.0])
    np.testing.assert_allclose(scores[0, :2], [_sig(3.0), _sig(-1.0)], atol=1e-6)
    np.testing.assert_array_equal(scores[0, 2:], 0.0)
    np.testing.assert_array_equal(boxes[0, 2:], 0.0)


def test_max_detections_keeps_the_best():
    boxes, classes, scores, num = postprocess_global(
        LOGITS, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(max_detections=1, score_threshold=1e-8)
    )
    assert int(num[0]) == 1
    np.testing.assert_allclose(scores[0], [_sig(3.0)], atol=1e-6)
    np.testing.assert_array_equal(classes[0], [1.0])


def test_low_threshold_keeps_everything_not_suppressed_in_score_order():
    _, _, scores, num = postprocess_global(
        LOGITS, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(max_detections=10, score_threshold=1e-8)
    )
    assert int(num[0]) == 3
    kept = scores[0, :3].numpy()
    np.testing.assert_allclose(kept, [_sig(3.0), _sig(-1.0), _sig(-10.0)], rtol=1e-5)
    assert list(kept) == sorted(kept, reverse=True)


def test_boxes_are_decoded_and_normalised():
    codes = np.zeros([1, 4, 4], np.float32)
    codes[0, 1] = [0.2, 0.0, 0.0, np.log(2.0)]  # a1: centre y 25 + 10, width 100
    boxes, _, _, _ = postprocess_global(
        LOGITS, codes, ANCHORS, (100, 100), nms=NMSOptions(score_threshold=0.5)
    )
    np.testing.assert_allclose(boxes[0, 0], [0.10, -0.20, 0.60, 0.80], atol=1e-6)


def test_batch_images_are_independent():
    # image 2 gives anchor i the logits of anchor 3 - i: a2 (class 1), a3 (class 0) and
    # a1 do not overlap, so nothing is suppressed there.
    logits = np.concatenate([LOGITS, LOGITS[:, ::-1]], axis=0)
    codes = np.zeros([2, 4, 4], np.float32)
    boxes, classes, scores, num = postprocess_global(
        logits, codes, ANCHORS, 100, nms=NMSOptions(score_threshold=0.1)
    )
    np.testing.assert_array_equal(num, [2, 3])
    np.testing.assert_allclose(scores[1, :3], [_sig(3.0), _sig(2.0), _sig(-1.0)], atol=1e-6)
    np.testing.assert_array_equal(classes[1, :3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(boxes[1, :3], ANCHORS[[2, 3, 1]] / 100, atol=1e-6)
    np.testing.assert_allclose(scores[0, :2], [_sig(3.0), _sig(-1.0)], atol=1e-6)


def test_per_class_nms_keeps_overlapping_boxes_of_different_classes():
    boxes, classes, scores, num = postprocess_per_class(
        LOGITS, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(max_detections=5, score_threshold=0.1)
    )
    assert int(num[0]) == 3
    np.testing.assert_allclose(scores[0, :3], [_sig(3.0), _sig(2.0), _sig(-1.0)], atol=1e-6)
    np.testing.assert_array_equal(classes[0, :3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(boxes[0, :3], ANCHORS[[1, 0, 2]] / 100, atol=1e-6)


@pytest.mark.parametrize("fn", [postprocess_global, postprocess_per_class])
def test_same_class_overlaps_are_suppressed(fn):
    logits = np.array([[[2.0], [3.0], [-1.0], [-10.0]]], np.float32)
    _, _, scores, num = fn(logits, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(score_threshold=0.1))
    assert int(num[0]) == 2
    np.testing.assert_allclose(scores[0, :2], [_sig(3.0), _sig(-1.0)], atol=1e-6)


@pytest.mark.parametrize("top_k", [0, 20])
def test_matches_the_tflite_detection_postprocess_op(top_k):
    """The TF mirror equals TFLite_Detection_PostProcess on random outputs (rows < num),
    with every anchor going to NMS (0) and with only the 20 best (the file's TOPK_V2 and
    GATHER ops before the op), fewer than N = 25."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from model_maker.core.detection_postprocess import (
        convert_to_tflite,
        tflite_detection_postprocess,
    )
    from model_maker.core.tflite_convert import list_ops
    from model_maker.object_detector.anchors import Anchors

    anchors = Anchors(3, 5, 3, (1.0, 2.0, 0.5), 3.0, 64)  # 756 overlapping anchors
    num, classes_k, threshold = 25, 3, 0.9
    nms = NMSOptions(num, threshold, 0.5, pre_nms_top_k=top_k)

    @tf.function
    def serve(encodings, logits):
        return tflite_detection_postprocess(
            encodings,
            tf.sigmoid(logits),
            tf.constant(anchors.centers_yxhw_normalized()),
            num_classes=classes_k,
            nms=nms,
        )

    spec = (
        tf.TensorSpec([1, anchors.num_anchors, 4]),
        tf.TensorSpec([1, anchors.num_anchors, classes_k]),
    )
    content = convert_to_tflite(serve.get_concrete_function(*spec))
    assert ("TOPK_V2" in {op.name for op in list_ops(content)}) == (top_k > 0)
    runner = Interpreter(model_content=content).get_signature_runner()
    rng = np.random.default_rng(0)
    counts = []
    for shift in (-1.0, -3.0):  # many detections (N reached) / fewer than N
        codes = (rng.normal(size=(1, anchors.num_anchors, 4)) * 0.3).astype(np.float32)
        logits = (rng.normal(size=(1, anchors.num_anchors, classes_k)) * 2 + shift).astype(
            np.float32
        )
        want = runner(encodings=codes, logits=logits)
        boxes, classes, scores, count = postprocess_global(
            logits, codes, anchors.boxes_yxyx, 64, nms
        )
        k = int(want["num_detections"][0])
        counts.append(k)
        assert int(count[0]) == k
        np.testing.assert_allclose(boxes[0, :k], want["boxes"][0, :k], atol=1e-5)
        np.testing.assert_array_equal(classes[0, :k], want["classes"][0, :k])
        np.testing.assert_allclose(scores[0, :k], want["scores"][0, :k], atol=1e-6)
    if top_k == 0:
        assert counts[0] == num and 0 < counts[1] < num
    else:  # at most the 20 candidates come out
        assert 0 < counts[0] <= top_k and 0 < counts[1] <= top_k


def test_top_k_keeps_the_best_anchors_before_the_threshold_and_nms():
    """pre_nms_top_k=1: only the best anchor is left, whatever else passes the threshold;
    2 keeps a0 and a1, which overlap, so one detection; 0 and k >= A change nothing."""
    scores = {}
    for top_k in (1, 2, 3, 4, 0, 1000):
        options = NMSOptions(max_detections=5, score_threshold=0.1, pre_nms_top_k=top_k)
        _, classes, got, num = postprocess_global(LOGITS, ZERO_CODES, ANCHORS, 100, nms=options)
        scores[top_k] = np.asarray(got[0, : int(num[0])])
    np.testing.assert_allclose(scores[1], [_sig(3.0)], atol=1e-6)
    np.testing.assert_allclose(scores[2], [_sig(3.0)], atol=1e-6)
    np.testing.assert_allclose(scores[3], [_sig(3.0), _sig(-1.0)], atol=1e-6)
    for top_k in (4, 0, 1000):
        np.testing.assert_allclose(scores[top_k], scores[3], atol=1e-6)
    _, _, per_class, num = postprocess_per_class(
        LOGITS, ZERO_CODES, ANCHORS, 100, nms=NMSOptions(5, 0.1, 0.5, pre_nms_top_k=1)
    )
    np.testing.assert_allclose(per_class[0, : int(num[0])], [_sig(3.0)], atol=1e-6)


def test_pre_nms_top_k_must_not_be_negative():
    from model_maker.core.settings import SettingsError

    with pytest.raises(SettingsError, match="pre_nms_top_k"):
        NMSOptions(pre_nms_top_k=-1)
    assert NMSOptions(pre_nms_top_k=0).candidates(19206) == 19206
    assert NMSOptions(pre_nms_top_k=1000).candidates(19206) == 1000
    assert NMSOptions(pre_nms_top_k=1000).candidates(756) == 756
