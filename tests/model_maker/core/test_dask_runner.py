"""Ingest (ExampleGen) and the detection evaluation on Beam's DaskRunner.

A real ``dask.distributed`` cluster (a scheduler and two worker processes on
127.0.0.1) runs the unchanged pipelines; their outputs must equal the
DirectRunner's: the same parsed records per split, the same label_map.json,
COCO ground truth and stats.json, the same detections and metrics. The data is
a subset of the real raccoon dataset (VOC, read in place through split files:
its label map is derived inside the pipeline, a side input) and the synthetic
demo data (COCO, with a fixed shard count: a grouping step).
"""

from __future__ import annotations

import glob
import json
import os
import pathlib

import numpy as np
import pytest

from model_maker.core.data.demo_data import generate_demo_data
from model_maker.core.data.ingest import IngestOptions, IngestResult, ingest
from model_maker.core.data.records import decode_example
from model_maker.core.evaluation import (
    BeamOptions,
    BlessingRule,
    EvalSource,
    Variant,
    decode_image,
    evaluate_variants,
    run_detection,
)
from tests.model_maker.core.detector_fixtures import CountingFactory, LookupDetector, image_key

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
#: raccoon images read in place (the split files choose them): 8 train, 4 eval.
TRAIN = [f"raccoon-{i}" for i in range(1, 9)]
EVAL = [f"raccoon-{i}" for i in range(9, 13)]


@pytest.fixture(scope="module")
def cluster():
    """(scheduler address, worker pids) of a two-process cluster on loopback."""
    from distributed import Client, LocalCluster

    local = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        with Client(local) as client:
            pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids
        assert local.scheduler_address.startswith("tcp://127.0.0.1:")
        yield local.scheduler_address, pids
    finally:
        local.close()


def dask_args(address: str) -> list[str]:
    # 3 partitions per created collection: several bundles, on both workers
    return [f"--runner={DASK_RUNNER}", f"--dask_client_address={address}", "--dask_npartitions=3"]


def records_by_split(result: IngestResult) -> dict[str, list[bytes]]:
    """Every split's records, parsed and re-serialized deterministically, sorted."""
    import tensorflow as tf

    out = {}
    for split in result.splits:
        files = sorted(glob.glob(result.record_pattern(split)))
        data = tf.data.TFRecordDataset(files, compression_type="GZIP")
        out[split] = sorted(
            tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
            for r in data
        )
    return out


def json_outputs(result: IngestResult) -> dict[str, object]:
    paths = [result.label_map_path, result.stats_path]
    paths += [result.annotations_path(s) for s in result.splits]
    return {os.path.basename(p): json.loads(pathlib.Path(p).read_text()) for p in paths}


def assert_same_ingest(direct: IngestResult, dask: IngestResult) -> None:
    assert dask.splits == direct.splits
    assert dask.images == direct.images and dask.boxes == direct.boxes
    assert records_by_split(dask) == records_by_split(direct)
    assert json_outputs(dask) == json_outputs(direct)
    leftovers = [p for p in glob.glob(os.path.join(dask.output, "**"), recursive=True)
                 if "temp" in os.path.basename(p) or ".ingest-staging" in p]  # fmt: skip
    assert leftovers == []


@pytest.fixture(scope="module")
def raccoon(tmp_path_factory, cluster, raccoon_dir):
    """The raccoon subset ingested by both runners: (direct result, dask result)."""
    root = tmp_path_factory.mktemp("raccoon")
    lists = {}
    for split, stems in (("train", TRAIN), ("eval", EVAL)):
        lists[split] = str(root / f"{split}.txt")
        pathlib.Path(lists[split]).write_text("\n".join(stems) + "\n")

    def options(name: str) -> IngestOptions:
        return IngestOptions(
            format="voc", input=str(raccoon_dir), output=str(root / name), split_files=lists
        )

    direct = ingest(options("direct"))
    dask = ingest(options("dask"), dask_args(cluster[0]))
    return direct, dask


def test_voc_ingest_on_dask_equals_the_direct_runner(raccoon):
    direct, dask = raccoon
    assert direct.images == {"train": 8, "eval": 4}
    assert [c.name for c in direct.label_map.classes] == ["raccoon"]  # derived in the pipeline
    assert_same_ingest(direct, dask)
    # several bundles wrote shards, and all of them were published
    assert len(glob.glob(dask.record_pattern("train"))) > 1


def test_coco_ingest_with_fixed_shards_on_dask_equals_the_direct_runner(tmp_path, cluster):
    data = generate_demo_data(tmp_path / "src", num_images=12, seed=5, image_size=64)

    def options(name: str, shards: int) -> IngestOptions:
        return IngestOptions(
            format="coco",
            input=data.images_dir,
            annotations=data.annotations,
            output=str(tmp_path / name),
            split_ratios={"train": 0.75, "eval": 0.25},
            num_shards=shards,
        )

    direct = ingest(options("direct", 0))
    dask = ingest(options("dask", 2), dask_args(cluster[0]))
    assert sum(direct.images.values()) == 12
    assert_same_ingest(direct, dask)
    for split in dask.splits:
        names = sorted(os.path.basename(p) for p in glob.glob(dask.record_pattern(split)))
        assert names == ["data_tfrecord-00000-of-00002.gz", "data_tfrecord-00001-of-00002.gz"]


def hand_detector(result: IngestResult) -> LookupDetector:
    """Detections made from the eval records' boxes: shifted, one missed, one spurious
    per image, so that AP is neither 0 nor 1 and every detection counts."""
    import tensorflow as tf

    table = []
    files = sorted(glob.glob(result.record_pattern("eval")))
    for n, raw in enumerate(tf.data.TFRecordDataset(files, compression_type="GZIP")):
        example = decode_example(raw.numpy())
        h, w = example.height, example.width
        found = []
        for k, (ymin, xmin, ymax, xmax) in enumerate(example.boxes):
            shift = 3.0 * ((n + k) % 3)
            box = (ymin * h + shift, xmin * w - shift, ymax * h + shift, xmax * w)
            found.append((int(example.labels[k]) - 1, box, 0.9 - 0.05 * k - 0.01 * n))
        found.append((0, (0.0, 0.0, 10.0, 10.0), 0.5 + 0.01 * n))
        table.append((image_key(decode_image(example.encoded)), tuple(found)))
    return LookupDetector(tuple(table))


def test_evaluation_on_dask_equals_the_direct_runner(raccoon, cluster, tmp_path):
    direct_data, dask_data = raccoon
    address, worker_pids = cluster
    detector = hand_detector(direct_data)
    log = tmp_path / "loads.txt"

    def evaluate(data: IngestResult, name: str, beam: BeamOptions, factory):
        return evaluate_variants(
            [Variant("hand", factory)],
            EvalSource(record_files=(data.record_pattern("eval"),)),
            data.annotations_path("eval"),
            str(tmp_path / name),
            rule=BlessingRule(candidate="hand"),
            latency_runs=0,
            beam=beam,
        )

    direct = evaluate(direct_data, "direct", BeamOptions(), detector)
    dask = evaluate(
        dask_data,
        "dask",
        BeamOptions.from_args(dask_args(address)),
        CountingFactory(detector, str(log)),
    )
    (one,), (two,) = direct.variants, dask.variants
    assert one["num_images"] == two["num_images"] == 4
    assert 0.0 < one["metrics"]["AP"] < 1.0
    assert two["metrics"] == one["metrics"]
    assert two["num_detections"] == one["num_detections"]
    # the detector ran in the workers, not in this process
    loads = {int(p) for p in log.read_text().split()}
    assert loads and loads <= worker_pids

    # the detections themselves, image by image
    key = lambda d: (d["image_id"], d["score"], tuple(d["bbox"]))  # noqa: E731
    source = EvalSource(record_files=(dask_data.record_pattern("eval"),))
    on_dask, count = run_detection(detector, source, BeamOptions.from_args(dask_args(address)))
    on_direct, _ = run_detection(
        detector, EvalSource(record_files=(direct_data.record_pattern("eval"),))
    )
    assert count == 4
    assert sorted(on_dask, key=key) == sorted(on_direct, key=key)
    np.testing.assert_array_equal(
        sorted(d["image_id"] for d in on_dask), sorted(d["image_id"] for d in on_direct)
    )


def test_image_folder_evaluation_on_dask_loses_no_image(raccoon, cluster, raccoon_dir):
    # Beam's WriteToText returned 0 images here on the DaskRunner, with exit 0.
    direct_data, _ = raccoon
    detector = hand_detector(direct_data)
    gt = json.loads(pathlib.Path(direct_data.annotations_path("eval")).read_text())
    source = EvalSource.from_image_folder(gt, str(raccoon_dir / "images"))
    on_dask, count = run_detection(detector, source, BeamOptions.from_args(dask_args(cluster[0])))
    on_direct, direct_count = run_detection(detector, source)
    key = lambda d: (d["image_id"], d["score"], tuple(d["bbox"]))  # noqa: E731
    assert count == direct_count == 4
    assert sorted(on_dask, key=key) == sorted(on_direct, key=key)
    assert len(on_dask) == sum(len(found) for _, found in detector.table)


def test_whole_raccoon_dataset_ingests_the_same_on_dask(tmp_path, cluster, raccoon_dir):
    # All 200 images, the runner's default partitions (128 elements), hash split.
    def options(name: str) -> IngestOptions:
        return IngestOptions(format="voc", input=str(raccoon_dir), output=str(tmp_path / name))

    direct = ingest(options("direct"))
    dask = ingest(
        options("dask"), [f"--runner={DASK_RUNNER}", f"--dask_client_address={cluster[0]}"]
    )
    assert sum(direct.images.values()) == 200
    assert_same_ingest(direct, dask)
