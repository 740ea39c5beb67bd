"""Issue 21: the detection evaluation's pipeline does not gather the eval images.

The listed images of a folder source reach the workers through spool files (not
embedded in the pipeline by ``beam.Create``), and the last step receives token
counts per shard, not one token per image. What stays in one process is what
pycocotools needs: every detection and ground-truth box of the split.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from model_maker.core import beam_io, beam_spool
from model_maker.core import evaluation as evaluation_module
from model_maker.core.evaluation import EvalSource, detect_all, run_detection
from tests.model_maker.core.detector_fixtures import (
    GridDetectorSpec,
    LookupDetector,
    image_key,
    write_image_dataset,
    write_records,
)

SPEC = GridDetectorSpec(image_size=32, grid=4, num_classes=2, max_detections=10)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images_dir, annotations, images = write_image_dataset(root, 6, SPEC, seed=5)
    records = root / "eval.gz"
    write_records(records, images_dir, annotations)
    gt = json.loads(annotations.read_text())
    table = []
    for image, image_id in images:
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
        found = tuple(
            (a["category_id"] - 1, (a["bbox"][1], a["bbox"][0], a["bbox"][1] + a["bbox"][3],
             a["bbox"][0] + a["bbox"][2]), 0.9 - 0.1 * k)
            for k, a in enumerate(anns)
        )  # fmt: skip
        table.append((image_key(image), found))
    return {"images_dir": images_dir, "records": records, "gt": gt,
            "detector": LookupDetector(tuple(table))}  # fmt: skip


def _key(d):
    return (d["image_id"], d["category_id"], d["score"], tuple(d["bbox"]))


def test_the_last_step_receives_counts_not_one_token_per_image(dataset, tmp_path, monkeypatch):
    # The last step used to receive a list of every image's token (gathered by ToList,
    # copied by the runner); it now receives the tokens counted per shard.
    real = evaluation_module._publish_detections
    seen = str(tmp_path / "last-step-input.pkl")

    def spy(received, *args):
        # a file, not a list: the runner runs an unpickled copy of this function
        with open(seen, "wb") as fh:
            pickle.dump(received, fh)
        return real(received, *args)

    monkeypatch.setattr(evaluation_module, "_publish_detections", spy)
    source = EvalSource(record_files=(str(dataset["records"]),) * 5)  # 30 images
    run = detect_all(dataset["detector"], source)
    assert run.count == 30
    with open(seen, "rb") as fh:
        pickled = fh.read()
    received = pickle.loads(pickled)
    assert isinstance(received, beam_io.WrittenCounts), type(received)
    assert received.elements == 30 and len(pickled) < 2000, len(pickled)


class _Stop(Exception):
    pass


def _built_pipeline(tmp_path, monkeypatch, source: EvalSource) -> tuple[int, list, int]:
    """(bytes of the pipeline detect_all builds for ``source``, the pairs it spooled)."""
    seen = {}

    def capture(pipeline):
        seen["bytes"] = len(pipeline.to_runner_api().SerializeToString())
        spooled = sorted(tmp_path.glob(".detections-*/**/*.pickle"))
        seen["items"] = [i for p in spooled for i in pickle.loads(p.read_bytes())]
        seen["files"] = len(spooled)
        raise _Stop

    monkeypatch.setattr(beam_io, "run", capture)
    with pytest.raises(_Stop):
        detect_all(LookupDetector(()), source, work_dir=str(tmp_path))
    assert not list(tmp_path.glob(".detections-*"))  # removed on the way out
    return seen["bytes"], seen["items"], seen["files"]


def test_the_pipeline_does_not_embed_the_listed_images(tmp_path, monkeypatch):
    # beam.Create(source.images) put every (image id, path) pair in the pipeline (and
    # copies of it in the runner); the pairs now go to spool files the pipeline names.
    def folder(count: int) -> EvalSource:
        return EvalSource(
            images=tuple((i, f"/data/eval/images/img{i:06d}.png") for i in range(1, count + 1))
        )

    small, _, _ = _built_pipeline(tmp_path / "small", monkeypatch, folder(100))
    large, items, files = _built_pipeline(tmp_path / "large", monkeypatch, folder(3000))
    assert large < small + 8 * 1024, (small, large)
    assert files == beam_spool.ITEM_FILES  # 47 pairs per file
    assert items == list(folder(3000).images)


def test_spooled_folder_source_detects_every_listed_image(dataset):
    # More pairs than spool files (several pairs per file): every image is detected
    # once per listing, with the same boxes as the records give.
    folder = EvalSource.from_image_folder(dataset["gt"], str(dataset["images_dir"]))
    many = EvalSource(images=folder.images * 50)  # 300 pairs, 5 per spool file
    detections, count = run_detection(dataset["detector"], many)
    from_records, n = run_detection(
        dataset["detector"], EvalSource(record_files=(str(dataset["records"]),))
    )
    assert (count, n) == (300, 6)
    assert from_records and sorted(detections, key=_key) == sorted(from_records * 50, key=_key)
    assert np.unique([d["image_id"] for d in detections]).size == 6
