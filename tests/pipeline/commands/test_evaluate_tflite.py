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
