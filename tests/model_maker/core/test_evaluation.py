"""The evaluator: AP equal to pycocotools, TFLite variants end to end, blessing, reports."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from model_maker.core.errors import DataError
from model_maker.core.evaluation import (
    BeamOptions,
    BlessingRule,
    EvalSource,
    Variant,
    decide_blessing,
    evaluate_variants,
    run_detection,
)
from model_maker.core.litert_detector import TFLiteDetectorFactory
from tests.model_maker.core.detector_fixtures import (
    CountingFactory,
    GridDetectorSpec,
    LookupDetector,
    build_grid_detector,
    image_key,
    write_image_dataset,
    write_records,
)

SPEC = GridDetectorSpec(image_size=32, grid=4, num_classes=2, max_detections=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images_dir, annotations, images = write_image_dataset(root, 6, SPEC, seed=3)
    records = root / "Split-eval" / "data_tfrecord-00000-of-00001.gz"
    write_records(records, images_dir, annotations)
    gt = json.loads(annotations.read_text())
    return {"images_dir": images_dir, "annotations": annotations, "images": images,
            "records": records, "gt": gt}  # fmt: skip


def _pycocotools_stats(gt: dict, detections: list[dict]) -> np.ndarray:
    """pycocotools run directly, independent of the code under test."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(detections))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _hand_detector(dataset, perfect: bool) -> tuple[LookupDetector, list[dict]]:
    """Detections built from the ground truth: exact, or shifted/missed/spurious."""
    gt = dataset["gt"]
    rng = np.random.default_rng(0)
    table, coco = [], []
    for image, image_id in dataset["images"]:
        found = []
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
        for k, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            if not perfect:
                if k == 1:
                    continue  # a miss
                x, y = x + rng.uniform(-4, 4), y + rng.uniform(-4, 4)
            score = 0.9 - 0.1 * k
            found.append((ann["category_id"] - 1, (y, x, y + h, x + w), score))
        if not perfect:
            found.append((0, (0.0, 0.0, 5.0, 5.0), 0.95))  # a false positive, top score
        table.append((image_key(image), tuple(found)))
        for cls, (y0, x0, y1, x1), score in found:
            coco.append({"image_id": image_id, "category_id": cls + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})  # fmt: skip
    return LookupDetector(tuple(table)), coco


@pytest.mark.parametrize("perfect", [True, False])
def test_reported_ap_equals_pycocotools_on_hand_made_detections(dataset, tmp_path, perfect):
    detector, coco = _hand_detector(dataset, perfect)
    result = evaluate_variants(
        [Variant("hand", detector)],
        EvalSource(record_files=(str(dataset["records"]),)),
        str(dataset["annotations"]),
        str(tmp_path / "out"),
        rule=BlessingRule(candidate="hand"),
        latency_runs=0,
    )
    (entry,) = result.variants
    assert entry["num_images"] == 6
    stats = _pycocotools_stats(dataset["gt"], coco)
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100"]
    reported = [entry["metrics"][k] for k in keys]
    np.testing.assert_allclose(reported, stats[:9], atol=1e-12)  # stats[:9]: the COCO summary
    if perfect:
        assert entry["metrics"]["AP"] == pytest.approx(1.0)
        assert entry["metrics"]["AP_/class0"] == pytest.approx(1.0)
        assert entry["metrics"]["AP_/class1"] == pytest.approx(1.0)
    else:
        assert 0.0 < entry["metrics"]["AP"] < 1.0
    # No float baseline among the variants: never blessed, and the reason says so.
    assert not result.decision.blessed
    assert "no float baseline" in result.decision.reasons[0]


def test_tflite_variants_end_to_end_with_reports(dataset, tmp_path):
    paths = {}
    for name, int8 in (("float32", False), ("ptq_int8", True)):
        paths[name] = tmp_path / f"{name}.tflite"
        paths[name].write_bytes(build_grid_detector(SPEC, int8=int8))
    variants = [Variant(n, TFLiteDetectorFactory(str(p)), str(p)) for n, p in paths.items()]
    out = tmp_path / "evaluation"
    result = evaluate_variants(
        variants,
        EvalSource(record_files=(str(dataset["records"]),)),
        dataset["gt"],
        str(out),
        rule=BlessingRule(candidate="ptq_int8", max_drop=1.0),
        latency_runs=3,
    )
    # The grid detector finds every coloured cell exactly: perfect AP, float and int8.
    for entry in result.variants:
        assert entry["metrics"]["AP"] == pytest.approx(1.0), entry["variant"]
        assert entry["bytes"] == paths[entry["variant"]].stat().st_size
        assert 0 < entry["latency"]["median_ms"] <= entry["latency"]["p90_ms"]
        assert entry["latency"]["num_threads"] == 1
    assert result.baseline == "float32"
    int8 = result.variants[1]
    assert int8["delta_to_float"]["AP"] == pytest.approx(0.0)
    assert set(int8["delta_to_float"]) >= {"AP", "AP50", "ARmax100", "AP_/class0"}
    assert result.decision.blessed

    doc = json.loads((out / "metrics.json").read_text())
    assert [v["variant"] for v in doc["variants"]] == ["float32", "ptq_int8"]
    assert doc["blessing"]["blessed"] is True and doc["baseline"] == "float32"
    md = (out / "report.md").read_text()
    assert "| ptq_int8 |" in md and "100.00" in md and "BLESSED" in md
    page = (out / "report.html").read_text()
    assert "<td>ptq_int8</td>" in page and "Blessing: BLESSED" in page
    assert json.loads((out / "blessing.json").read_text())["candidate"] == "ptq_int8"


def test_image_folder_source_gives_the_same_detections_as_records(dataset):
    factory, _ = _hand_detector(dataset, perfect=False)
    from_records, n1 = run_detection(factory, EvalSource(record_files=(str(dataset["records"]),)))
    folder = EvalSource.from_image_folder(dataset["gt"], str(dataset["images_dir"]))
    from_folder, n2 = run_detection(factory, folder)
    key = lambda d: (d["image_id"], d["score"], tuple(d["bbox"]))  # noqa: E731
    assert n1 == n2 == 6
    assert sorted(from_records, key=key) == sorted(from_folder, key=key)


def test_each_worker_loads_its_detector_once(dataset, tmp_path):
    inner, _ = _hand_detector(dataset, perfect=True)
    log = tmp_path / "loads.txt"
    source = EvalSource(record_files=(str(dataset["records"]),) * 3)  # 18 images, 3 reads
    _, count = run_detection(CountingFactory(inner, str(log)), source)
    assert count == 18
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("candidate", "max_drop", "blessed"),
    [(0.49, 1.0, True), (0.4899, 1.0, False), (0.50, 0.0, True), (0.45, 5.0, True),
     (0.4499, 5.0, False)],
)  # fmt: skip
def test_blessing_threshold_is_in_ap_points(candidate, max_drop, blessed):
    metrics = {"float32": {"AP": 0.50}, "keras_float": {"AP": 0.50}, "qat_int8": {"AP": candidate}}
    decision = decide_blessing(metrics, BlessingRule("qat_int8", "AP", max_drop))
    assert decision.blessed is blessed
    assert decision.baseline == "keras_float"  # preferred over the TFLite float32 variant
    assert decision.threshold == pytest.approx(0.50 - max_drop / 100)
    assert ("within" if blessed else "more than") in decision.reasons[0]


def test_blessing_refuses_missing_or_undefined_metrics():
    missing = decide_blessing({"float32": {"AP": 0.5}}, BlessingRule("qat_int8"))
    assert not missing.blessed and "not evaluated" in missing.reasons[0]
    undefined = decide_blessing(
        {"float32": {"AP": -1.0}, "qat_int8": {"AP": 0.3}}, BlessingRule("qat_int8")
    )
    assert not undefined.blessed and "undefined" in undefined.reasons[0]
    explicit = decide_blessing(
        {"float32": {"AP50": 0.8}, "keras_float": {"AP50": 0.9}, "ptq_int8": {"AP50": 0.795}},
        BlessingRule("ptq_int8", "AP50", 1.0, baseline="float32"),
    )
    assert explicit.blessed and explicit.baseline == "float32"


def test_beam_args_pass_through_and_win():
    args = BeamOptions(num_workers=2, beam_args=("--direct_running_mode=multi_threading",))
    assert args.pipeline_args() == [
        "--runner=DirectRunner",
        "--direct_num_workers=2",
        "--direct_running_mode=multi_threading",
    ]
    assert "--direct_running_mode=in_memory" in BeamOptions(num_workers=1).pipeline_args()


@pytest.mark.slow
def test_two_worker_processes_give_the_same_metrics(dataset):
    path = dataset["records"].parent.parent / "float32.tflite"
    path.write_bytes(build_grid_detector(SPEC))
    source = EvalSource(record_files=(str(dataset["records"]),))
    log = path.parent / "loads.txt"
    one, _ = run_detection(TFLiteDetectorFactory(str(path)), source, BeamOptions(num_workers=1))
    factory = CountingFactory(TFLiteDetectorFactory(str(path)), str(log))
    two, n = run_detection(factory, source, BeamOptions(num_workers=2))
    key = lambda d: (d["image_id"], d["score"], tuple(d["bbox"]))  # noqa: E731
    assert n == 6 and sorted(one, key=key) == sorted(two, key=key)
    pids = log.read_text().split()
    assert len(pids) in (1, 2) and len(set(pids)) == len(pids)  # at most once per worker


def test_image_folder_and_ground_truth_on_a_beam_filesystem_uri(dataset, mem, tmp_path):
    # evaluate-tflite with --images/--annotations on gs://: same detections and metrics.
    from model_maker.core.data import fileio

    remote_images = fileio.join(mem, "images")
    for path in dataset["images_dir"].iterdir():
        fileio.write_bytes(fileio.join(remote_images, path.name), path.read_bytes())
    remote_gt = fileio.join(mem, "annotations.json")
    fileio.write_text(remote_gt, dataset["annotations"].read_text())
    factory, _ = _hand_detector(dataset, perfect=False)
    local = EvalSource.from_image_folder(dataset["gt"], str(dataset["images_dir"]))
    remote = EvalSource.from_image_folder(dataset["gt"], remote_images)
    assert all(path.startswith("memtest://") for _, path in remote.images)
    key = lambda d: (d["image_id"], d["score"], tuple(d["bbox"]))  # noqa: E731
    from_local, n1 = run_detection(factory, local)
    from_remote, n2 = run_detection(factory, remote)
    assert n1 == n2 == 6 and sorted(from_local, key=key) == sorted(from_remote, key=key)
    results = [
        evaluate_variants(
            [Variant("hand", factory)],
            remote,
            gt,
            str(tmp_path / name),
            rule=BlessingRule(candidate="hand"),
            latency_runs=0,
        )
        for name, gt in (("local", str(dataset["annotations"])), ("remote", remote_gt))
    ]
    assert results[0].variants[0]["metrics"] == results[1].variants[0]["metrics"]
    assert 0.0 < results[1].variants[0]["metrics"]["AP"] < 1.0
    with pytest.raises(DataError, match="not in memtest://"):
        EvalSource.from_image_folder(dataset["gt"], fileio.join(mem, "empty"))
