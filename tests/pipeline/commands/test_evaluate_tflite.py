"""qatflow evaluate-tflite on a tiny detector and a folder of PNG images."""

import json

import numpy as np
import pytest

from pipeline.cli import main
from tests.model_maker.core.detector_fixtures import (
    GridDetectorSpec,
    build_grid_detector,
    grid_anchors,
    write_image_dataset,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    images_dir, annotations, _ = write_image_dataset(root, 4, GridDetectorSpec(), seed=5)
    model = root / "grid.tflite"
    model.write_bytes(build_grid_detector(GridDetectorSpec()))
    raw = root / "raw.tflite"
    raw.write_bytes(build_grid_detector(GridDetectorSpec(), with_nms=False))
    anchors = root / "anchors.npy"
    np.save(anchors, grid_anchors(GridDetectorSpec().grid))
    return root, images_dir, annotations, model, raw, anchors


def test_prints_the_metrics_table_and_writes_reports(data, capsys):
    root, images_dir, annotations, model, _, _ = data
    code = main(["evaluate-tflite", "--model", str(model), "--annotations", str(annotations),
                 "--images", str(images_dir), "--output", str(root / "out"),
                 "--latency-runs", "2"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "grid: 4 images" in out
    lines = {
        line.split()[0]: line.split()[1] for line in out.splitlines() if line[:3] in ("AP ", "AP_")
    }
    assert lines["AP"] == "1.0000" and lines["AP_/class0"] == "1.0000"
    doc = json.loads((root / "out" / "metrics.json").read_text())
    assert doc["variants"][0]["metrics"]["AP"] == pytest.approx(1.0)


def test_raw_model_with_anchors(data, capsys):
    root, images_dir, annotations, _, raw, anchors = data
    code = main(["evaluate-tflite", "--model", str(raw), "--annotations", str(annotations),
                 "--images", str(images_dir), "--anchors", str(anchors),
                 "--output", str(root / "raw-out"), "--latency-runs", "0",
                 "--score-threshold", "0.01"])  # fmt: skip
    assert code == 0
    doc = json.loads((root / "raw-out" / "metrics.json").read_text())
    assert doc["variants"][0]["metrics"]["AP"] == pytest.approx(1.0)
    assert doc["variants"][0]["latency"] is None


def test_raw_model_without_anchors_and_missing_files_fail_in_one_line(data, capsys):
    root, images_dir, annotations, _, raw, _ = data
    code = main(["evaluate-tflite", "--model", str(raw), "--annotations", str(annotations),
                 "--images", str(images_dir)])  # fmt: skip
    assert code == 1
    assert "give the anchors file" in capsys.readouterr().err
    code = main(["evaluate-tflite", "--model", str(root / "nope.tflite"), "--annotations",
                 str(annotations), "--images", str(images_dir)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--model" in err and "not found" in err and err.count("\n") == 1


def test_bad_post_processing_flag_exits_2_naming_the_flag(tmp_path, capsys):
    argv = ["evaluate-tflite", "--model", str(tmp_path / "m.tflite"), "--annotations",
            str(tmp_path / "gt.json"), "--images", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--iou-threshold", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qatflow: error: --iou-threshold 1.5: ")
    assert main([*argv, "--max-detections", "0"]) == 2
    assert "--max-detections 0: " in capsys.readouterr().err
    assert main([*argv, "--pre-nms-top-k", "-5"]) == 2
    assert "--pre-nms-top-k -5: " in capsys.readouterr().err


# --- classifiers: one [1, C] output, class folders ---------------------------------------

#: The tiny classifier's outputs: logits = mean (R, G, B), so a red image is class 0.
MODEL_CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def classifier_data(tmp_path_factory):
    import tf_keras as keras
    from PIL import Image

    from model_maker.image_classifier.export import DEFAULT_MODEL_INFO, export_tflite

    root = tmp_path_factory.mktemp("cls-cli")
    images = keras.Input((16, 16, 3), name="images")
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    logits = keras.layers.Dense(3, name="logits")(pooled)
    model = keras.Model(images, logits)
    model.get_layer("logits").set_weights([np.eye(3, dtype=np.float32) / 25.0, np.zeros(3)])
    with_labels, bare = root / "colours.tflite", root / "bare.tflite"
    export_tflite(model, str(with_labels), labels=MODEL_CLASSES, metadata=DEFAULT_MODEL_INFO)
    export_tflite(model, str(bare), labels=MODEL_CLASSES, metadata=None)
    folders = root / "images"
    rng = np.random.default_rng(0)
    for index, name in enumerate(MODEL_CLASSES):
        (folders / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 40, (20 + i, 24, 3), dtype=np.uint8)
            pixels[..., index] = 230
            Image.fromarray(pixels).save(folders / name / f"{i}.png")
    (folders / "blue" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root, folders, with_labels, bare


def _lines(out):
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) == 2}


def test_classifier_is_scored_on_class_folders_matched_by_name(classifier_data, capsys):
    root, folders, with_labels, _ = classifier_data
    code = main(["evaluate-tflite", "--model", str(with_labels), "--images", str(folders),
                 "--output", str(root / "out"), "--latency-runs", "2"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "colours: classifier, 6 images (1 skipped)" in out
    lines = _lines(out)
    assert lines["top1"] == "1.0000" and lines["acc_/blue"] == "1.0000"
    doc = json.loads((root / "out" / "metrics.json").read_text())
    assert doc["task"] == "image_classification" and doc["classes"] == MODEL_CLASSES
    (entry,) = doc["variants"]
    assert entry["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert entry["latency"]["runs"] == 2


def test_classifier_without_metadata_takes_labels_or_the_sorted_folders(classifier_data, capsys):
    root, folders, _, bare = classifier_data
    labels = root / "labels.txt"
    labels.write_text("\n".join(MODEL_CLASSES) + "\n")
    assert main(["evaluate-tflite", "--model", str(bare), "--images", str(folders),
                 "--labels", str(labels), "--output", str(root / "l"),
                 "--latency-runs", "0"]) == 0  # fmt: skip
    assert _lines(capsys.readouterr().out)["top1"] == "1.0000"
    # without labels, output k is the k-th sorted folder (blue, green, red): only green agrees
    assert main(["evaluate-tflite", "--model", str(bare), "--images", str(folders),
                 "--output", str(root / "s"), "--latency-runs", "0"]) == 0  # fmt: skip
    assert _lines(capsys.readouterr().out)["top1"] == "0.3333"


def test_classifier_usage_and_data_errors_are_one_line(classifier_data, tmp_path, capsys):
    root, folders, with_labels, _ = classifier_data
    code = main(["evaluate-tflite", "--model", str(with_labels), "--images", str(folders),
                 "--annotations", str(tmp_path / "gt.json")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "this model is a classifier" in err and "\n" not in err
    strange = tmp_path / "imgs"
    (strange / "purple").mkdir(parents=True)
    (strange / "purple" / "0.png").hardlink_to(folders / "red" / "0.png")
    code = main(["evaluate-tflite", "--model", str(with_labels), "--images", str(strange)])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "class folder(s) purple are not among the model's classes (red, green, blue)" in err
    assert "\n" not in err
