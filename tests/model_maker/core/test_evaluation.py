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
    detect_all,
    evaluate_variants,
    run_detection,
)
from model_maker.core.litert_detector import TFLiteDetectorFactory
from tests.model_maker.core.detector_fixtures import (
    CountingFactory,
    GridDetectorSpec,
    LookupDetector,
    SlowFactory,
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
    # the cost of each variant, start-up and per image apart, in metrics.json and both reports
    for entry in doc["variants"]:
        cost = entry["cost"]
        assert cost["images"] == 6 and cost["workers"] == 1
        assert 0 < cost["per_image_ms"] and 0 <= cost["load_seconds"] <= cost["startup_seconds"]
        parts = ("startup_seconds", "scoring_seconds", "latency_seconds")
        assert sum(cost[k] for k in parts) <= cost["total_seconds"]
    assert "## Evaluation cost" in md and md.count("| 6 |") >= 2
    assert "<h2>Evaluation cost</h2>" in page
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


def test_detection_cost_separates_detector_load_from_per_image_time(dataset):
    inner, _ = _hand_detector(dataset, perfect=True)
    factory = SlowFactory(inner, load_seconds=0.5, image_seconds=0.05)
    run = detect_all(factory, EvalSource(record_files=(str(dataset["records"]),)))
    cost = run.cost
    assert run.count == cost.images == 6 and cost.workers == 1
    assert 0.5 <= cost.load_seconds < 1.5
    assert 50 <= cost.per_image_ms < 500
    # start-up is the wall time not spent on images: it holds the load, not the images
    assert cost.load_seconds <= cost.startup_seconds
    assert cost.startup_seconds == pytest.approx(cost.seconds - 6 * cost.per_image_ms / 1000)
    assert cost.image_seconds >= 6 * 0.05


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


# --- per-image outputs: detections.json, pr_curves.json, gallery/, report.html --------------


def _variant_tables(dataset) -> dict[str, LookupDetector]:
    """float32: the ground truth (+ a 0.2 box that is stored but never counts, a 0.01 box that
    is not stored); qat_int8: the same; ptq_int8: the same except on images 1, 2 and 5."""
    gt = dataset["gt"]
    tables: dict[str, list] = {"float32": [], "ptq_int8": [], "qat_int8": []}
    for image, image_id in dataset["images"]:
        exact = []
        for k, ann in enumerate(a for a in gt["annotations"] if a["image_id"] == image_id):
            x, y, w, h = ann["bbox"]
            exact.append((ann["category_id"] - 1, (y, x, y + h, x + w), 0.9 - 0.1 * k))
        extras = [(0, (0.0, 0.0, 3.0, 3.0), 0.2), (1, (0.0, 0.0, 5.0, 5.0), 0.01)]
        changed = list(exact)
        if image_id == 1:  # first box 4 px right: IoU 1/3, no match -> 1 - 2/3
            cls, (y0, x0, y1, x1), score = changed[0]
            changed[0] = (cls, (y0, x0 + 4, y1, x1 + 4), score)
        elif image_id == 2:  # its one box missed -> 1.0
            changed = []
        elif image_id == 5:  # second box of the other class -> 1 - 1/2
            cls, box, score = changed[1]
            changed[1] = (1 - cls, box, score)
        key = image_key(image)
        tables["float32"].append((key, tuple(exact + extras)))
        tables["qat_int8"].append((key, tuple(exact + extras)))
        tables["ptq_int8"].append((key, tuple(changed + extras)))
    return {name: LookupDetector(tuple(rows)) for name, rows in tables.items()}


def _strict_json(path):
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"not strict: {c}"))


@pytest.fixture(scope="module")
def gallery_run(dataset, tmp_path_factory):
    from pycocotools.cocoeval import COCOeval

    from model_maker.core import gallery

    out = tmp_path_factory.mktemp("gallery") / "evaluation"
    runs = []
    evaluate = COCOeval.evaluate

    def counting(self):
        runs.append(self)
        return evaluate(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(COCOeval, "evaluate", counting)
        patch.setattr(gallery, "GALLERY_IMAGES", 4)
        patch.setattr(gallery, "REPORT_IMAGES", 3)
        detectors = _variant_tables(dataset)
        result = evaluate_variants(
            [Variant(name, detector) for name, detector in detectors.items()],
            EvalSource(record_files=(str(dataset["records"]),)),
            str(dataset["annotations"]),
            str(out),
            rule=BlessingRule(candidate="qat_int8"),
            latency_runs=0,
        )
    return result, out, len(runs)


def test_one_cocoeval_run_per_variant_gives_metrics_and_curves(gallery_run):
    result, out, runs = gallery_run
    assert runs == 3
    assert {"pr_curves.json", "detections.json", "gallery", "metrics.json"} <= set(result.files)
    curves = _strict_json(out / "pr_curves.json")
    metrics = {e["variant"]: e["metrics"] for e in _strict_json(out / "metrics.json")["variants"]}
    assert curves["version"] == 1 and len(curves["recall"]) == 101
    assert list(curves["variants"]) == ["float32", "ptq_int8", "qat_int8"]
    for variant, curve in curves["variants"].items():
        assert np.mean(curve["all"]["iou50"]) == pytest.approx(metrics[variant]["AP50"], abs=1e-6)
        assert np.mean(curve["all"]["mean"]) == pytest.approx(metrics[variant]["AP"], abs=1e-6)
        assert set(curve["per_class"]) == {"class0", "class1"}
    assert metrics["ptq_int8"]["AP"] < metrics["float32"]["AP"]


def test_detections_json_follows_the_contract(gallery_run, dataset):
    _, out, _ = gallery_run
    doc = _strict_json(out / "detections.json")
    assert set(doc) == {"version", "score_floor", "diff_threshold", "baseline", "categories",
                        "images", "detections"}  # fmt: skip
    assert (doc["version"], doc["score_floor"], doc["diff_threshold"]) == (1, 0.05, 0.3)
    assert doc["baseline"] == "float32"
    assert doc["categories"] == [{"id": 1, "name": "class0"}, {"id": 2, "name": "class1"}]
    # most different first (over ptq_int8 and qat_int8), ties by id; every image listed
    assert [i["id"] for i in doc["images"]] == [2, 5, 1, 3, 4, 6]
    by_id = {i["id"]: i for i in doc["images"]}
    assert by_id[2]["difference"] == {"ptq_int8": 1.0, "qat_int8": 0.0}
    assert by_id[5]["difference"] == {"ptq_int8": 0.5, "qat_int8": 0.0}
    assert by_id[1]["difference"] == {"ptq_int8": 0.3333, "qat_int8": 0.0}
    assert by_id[4]["difference"] == {"ptq_int8": 0.0, "qat_int8": 0.0}
    gt_image = next(i for i in dataset["gt"]["images"] if i["id"] == 5)
    assert (by_id[5]["file_name"], by_id[5]["width"], by_id[5]["height"]) == (
        gt_image["file_name"], gt_image["width"], gt_image["height"])  # fmt: skip
    assert by_id[5]["ground_truth"] == [[0.0, 16.0, 16.0, 16.0, 1], [32.0, 16.0, 16.0, 16.0, 2]]
    assert set(doc["detections"]) == {"float32", "ptq_int8", "qat_int8"}
    # float32 on image 5: the two exact boxes (0.9, 0.8) and the 0.2 box; not the 0.01 one
    assert doc["detections"]["float32"]["5"] == [
        [0.0, 16.0, 16.0, 16.0, 0.9, 1],
        [32.0, 16.0, 16.0, 16.0, 0.8, 2],
        [0.0, 0.0, 3.0, 3.0, 0.2, 1],
    ]
    assert doc["detections"]["ptq_int8"]["2"] == [[0.0, 0.0, 3.0, 3.0, 0.2, 1]]
    for boxes in doc["detections"].values():
        assert set(boxes) == {"1", "2", "3", "4", "5", "6"}
        for found in boxes.values():
            assert all(b[4] >= 0.05 for b in found)
            assert [b[4] for b in found] == sorted((b[4] for b in found), reverse=True)


def test_thumbnails_of_the_first_images_never_upscaled(gallery_run, dataset):
    from PIL import Image

    _, out, _ = gallery_run
    doc = _strict_json(out / "detections.json")
    thumbs = [i["thumbnail"] for i in doc["images"]]
    assert thumbs == [
        "gallery/2.jpg",
        "gallery/5.jpg",
        "gallery/1.jpg",
        "gallery/3.jpg",
        None,
        None,
    ]
    assert sorted(p.name for p in (out / "gallery").iterdir()) == [
        "1.jpg",
        "2.jpg",
        "3.jpg",
        "5.jpg",
    ]
    for image in doc["images"][:4]:
        with Image.open(out / image["thumbnail"]) as thumb:
            # the fixture's images are 32 or 64 px: kept at their size (<= 512, never upscaled)
            assert thumb.format == "JPEG" and thumb.mode == "RGB"
            assert thumb.size == (image["width"], image["height"])


def test_report_html_embeds_the_top_images_with_their_boxes(gallery_run, dataset):
    import base64
    import io
    import re

    from PIL import Image

    from model_maker.core.gallery import box_colour

    _, out, _ = gallery_run
    page = (out / "report.html").read_text()
    assert "Most different images" in page
    shown = re.findall(r'<img src="data:image/jpeg;base64,[^"]+" width="\d+" height="\d+" '
                       r'alt="([^"]+)">', page)  # fmt: skip
    # the top 3 images (REPORT_IMAGES patched to 3), baseline + the two int8 variants each
    assert shown == [
        f"{v}, image {i}" for i in (2, 5, 1) for v in ("float32", "ptq_int8", "qat_int8")
    ]
    uri = re.search(r'src="data:image/jpeg;base64,([^"]+)"[^>]*alt="ptq_int8, image 5"', page)
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.group(1)))).convert("RGB"))
    source = np.asarray(Image.open(dataset["images_dir"] / "img0005.png").convert("RGB"))
    assert drawn.shape == source.shape == (32, 64, 3)
    # ptq_int8's first box [0, 16, 16, 16] of class 0 (category 1): left edge at x=0, y=24
    edge = drawn[24, 0].astype(int)
    assert np.abs(edge - box_colour(1)).max() < 60  # the outline colour (JPEG)
    assert np.abs(edge - source[24, 0]).max() > 150  # where the source is red
    assert np.abs(drawn[4, 20].astype(int) - source[4, 20]).max() < 40  # away from boxes
