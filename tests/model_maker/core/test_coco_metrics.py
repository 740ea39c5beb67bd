import json

import numpy as np
import pytest

from model_maker.core.coco_metrics import SUMMARY_KEYS, coco_metrics


def _ground_truth():
    # Two images, two classes; boxes large enough to count as "large" (> 96^2 px).
    return {
        "images": [
            {"id": 1, "width": 640, "height": 480, "file_name": "a.jpg"},
            {"id": 2, "width": 640, "height": 480, "file_name": "b.jpg"},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 200, 150]},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [300, 200, 150, 120]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [50, 50, 300, 250]},
        ],
    }


def _perfect(gt):
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 0.9,
        }
        for a in gt["annotations"]
    ]


def test_perfect_detections_give_ap_one_and_per_class_keys():
    gt = _ground_truth()
    metrics = coco_metrics(gt, _perfect(gt), {1: "cat", 2: "dog"})
    for key in SUMMARY_KEYS:
        assert key in metrics
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(1.0)
    assert metrics["APl"] == pytest.approx(1.0)
    # No small or medium boxes in the ground truth: pycocotools reports -1 (undefined).
    assert metrics["APs"] == -1.0
    assert metrics["APm"] == -1.0
    assert metrics["ARmax100"] == pytest.approx(1.0)
    assert metrics["AP_/cat"] == pytest.approx(1.0)
    assert metrics["AP_/dog"] == pytest.approx(1.0)
    # ground truth left untouched
    assert "iscrowd" not in gt["annotations"][0]


def test_missing_box_lowers_recall_and_that_class_only():
    gt = _ground_truth()
    dets = _perfect(gt)[:2]  # drop the second cat (image 2)
    metrics = coco_metrics(gt, dets, {1: "cat", 2: "dog"})
    assert metrics["ARmax100"] == pytest.approx(0.75)  # cat recall 0.5, dog 1.0
    assert metrics["AP_/dog"] == pytest.approx(1.0)
    assert metrics["AP_/cat"] == pytest.approx(0.5, abs=0.01)
    assert metrics["AP"] < 1.0


def test_shifted_box_fails_high_iou_thresholds():
    gt = _ground_truth()
    dets = _perfect(gt)
    x, y, w, h = dets[2]["bbox"]
    dets[2]["bbox"] = [x + 0.2 * w, y, w, h]  # IoU = 0.8 / 1.2 = 0.667
    metrics = coco_metrics(gt, dets)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] < 1.0
    assert 0.0 < metrics["AP"] < 1.0


def test_empty_detections_give_zero(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_ground_truth()))
    metrics = coco_metrics(str(path), [], {1: "cat", 2: "dog"})
    assert metrics["AP"] == 0.0
    assert metrics["ARmax100"] == 0.0
    assert metrics["AP_/cat"] == 0.0
    assert metrics["AP_/dog"] == 0.0


def test_label_names_default_to_categories_and_unknown_class_is_undefined():
    gt = _ground_truth()
    metrics = coco_metrics(gt, _perfect(gt))
    assert {"AP_/cat", "AP_/dog"} <= set(metrics)
    metrics = coco_metrics(gt, _perfect(gt), {1: "cat", 2: "dog", 3: "bird"})
    assert metrics["AP_/bird"] == -1.0


def test_detection_on_unknown_image_is_an_error():
    gt = _ground_truth()
    with pytest.raises(ValueError, match="image_id 99"):
        coco_metrics(gt, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])


def test_ground_truth_read_from_a_beam_filesystem_uri(mem):
    from model_maker.core.data import fileio

    gt = _ground_truth()
    path = fileio.join(mem, "eval_annotations.json")
    fileio.write_text(path, json.dumps(gt))
    assert coco_metrics(path, _perfect(gt))["AP"] == pytest.approx(1.0)


# --- one COCOeval run: metrics and precision/recall curves ------------------------------


def _curves(gt, dets, names=None):
    from model_maker.core.coco_metrics import evaluate_coco, pr_curves

    evaluation = evaluate_coco(gt, dets, names)
    return evaluation, pr_curves(evaluation)


def _imperfect(gt):
    """A miss (second cat), a shifted dog (IoU 0.6: counts at .50/.55 only) and a false
    positive dog on image 2 scored above everything."""
    dets = _perfect(gt)[:2]
    x, y, w, h = dets[1]["bbox"]
    dets[1]["bbox"] = [x + 0.25 * w, y, w, h]  # IoU = 0.75 / 1.25 = 0.6
    dets.append({"image_id": 2, "category_id": 2, "bbox": [0, 0, 30, 30], "score": 0.95})
    return dets


def test_evaluate_coco_gives_the_metrics_of_coco_metrics():
    from model_maker.core.coco_metrics import evaluate_coco

    gt = _ground_truth()
    evaluation = evaluate_coco(gt, _imperfect(gt))
    assert evaluation.metrics == coco_metrics(gt, _imperfect(gt))
    assert evaluation.precision.shape == (10, 101, 2, 4, 3)  # [T, R, K, A, M]
    assert evaluation.category_ids == (1, 2)
    assert evaluation.recall_points[0] == 0.0 and evaluation.recall_points[-1] == 1.0
    assert evaluation.iou_thresholds[0] == 0.5


def test_perfect_detector_has_precision_one_at_every_recall_point():
    gt = _ground_truth()
    _, curves = _curves(gt, _perfect(gt))
    for curve in [curves["all"], *curves["per_class"].values()]:
        assert curve["iou50"] == [1.0] * 101
        assert curve["mean"] == [1.0] * 101
    assert set(curves["per_class"]) == {"cat", "dog"}


def test_hand_computed_curve_of_a_ranked_false_positive():
    # Two cats; detections by score: hit (0.9), false positive (0.8), hit (0.7).
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; interpolated (max to the right):
    # 1.0 up to recall 0.5, 2/3 above.
    gt = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100]},
            {"image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100]},
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [300, 0, 50, 50], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [200, 200, 100, 100], "score": 0.7},
    ]
    evaluation, curves = _curves(gt, dets)
    expected = [1.0] * 51 + [round(2 / 3, 6)] * 50
    assert curves["all"]["iou50"] == expected
    assert curves["per_class"]["cat"]["iou50"] == expected
    assert curves["per_class"]["cat"]["mean"] == expected  # exact boxes: every IoU threshold
    assert evaluation.metrics["AP50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_curve_means_are_the_pycocotools_ap_and_all_is_the_mean_of_the_classes():
    gt = _ground_truth()
    evaluation, curves = _curves(gt, _imperfect(gt))
    metrics = evaluation.metrics
    assert 0.0 < metrics["AP"] < metrics["AP50"] < 1.0
    assert np.mean(curves["all"]["iou50"]) == pytest.approx(metrics["AP50"], abs=1e-6)
    assert np.mean(curves["all"]["mean"]) == pytest.approx(metrics["AP"], abs=1e-6)
    for name in ("cat", "dog"):
        per_class = curves["per_class"][name]
        assert np.mean(per_class["mean"]) == pytest.approx(metrics[f"AP_/{name}"], abs=1e-6)
    for kind in ("iou50", "mean"):
        by_class = np.array([curves["per_class"][n][kind] for n in ("cat", "dog")])
        np.testing.assert_allclose(curves["all"][kind], by_class.mean(axis=0), atol=1e-6)
    # the shifted dog counts at IoU .50 and .55 only: its mean curve is below its iou50 curve
    assert np.mean(curves["per_class"]["dog"]["mean"]) < np.mean(
        curves["per_class"]["dog"]["iou50"]
    )


def test_undefined_points_are_none_and_left_out_of_all():
    gt = _ground_truth()
    gt["categories"].append({"id": 3, "name": "bird"})  # no bird in the ground truth
    evaluation, curves = _curves(gt, _perfect(gt), {1: "cat", 2: "dog", 3: "bird", 4: "fish"})
    assert curves["per_class"]["bird"] == {"iou50": [None] * 101, "mean": [None] * 101}
    assert curves["per_class"]["fish"] == {"iou50": [None] * 101, "mean": [None] * 101}
    assert curves["all"]["iou50"] == [1.0] * 101  # the undefined bird does not pull it down
    assert evaluation.metrics["AP_/bird"] == evaluation.metrics["AP_/fish"] == -1.0
    empty = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
    _, nothing = _curves(empty, [])
    assert nothing["all"]["mean"] == [None] * 101


def test_pr_curves_document_is_strict_json_with_the_101_recall_points():
    from model_maker.core.coco_metrics import pr_curves_document

    gt = _ground_truth()
    gt["categories"].append({"id": 3, "name": "bird"})
    evaluation, curves = _curves(gt, _imperfect(gt))
    text = json.dumps(pr_curves_document({"v": curves}, evaluation.recall_points), allow_nan=False)
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert doc["version"] == 1
    assert doc["recall"] == [round(i / 100, 2) for i in range(101)]
    assert set(doc["variants"]["v"]) == {"all", "per_class"}
    assert doc["variants"]["v"]["per_class"]["bird"]["mean"][0] is None
    values = [p for p in doc["variants"]["v"]["all"]["mean"] if p is not None]
    assert len(values) == 101 and all(round(p, 6) == p for p in values)
