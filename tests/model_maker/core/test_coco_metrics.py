import json

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
