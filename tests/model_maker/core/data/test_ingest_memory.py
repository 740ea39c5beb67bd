"""Issue 21: ingestion's memory stays flat as the number of images grows.

Neither the driver's pipeline nor the last step may hold the dataset: the listed
items reach the workers through spool files (not embedded in the pipeline by
``beam.Create``), and the last step receives token counts, not the summaries.
"""

from __future__ import annotations

import pickle

from model_maker.core import beam_spool
from model_maker.core.data import ingest as ingest_module
from model_maker.core.data.demo_data import generate_demo_data
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.source import SourceImage


def _coco(tmp_path, num_images: int) -> IngestOptions:
    data = generate_demo_data(tmp_path / "src", num_images=num_images, seed=4, image_size=64)
    return IngestOptions(
        format="coco",
        input=data.images_dir,
        annotations=data.annotations,
        output=str(tmp_path / "out"),
    )


def test_ingest_last_step_receives_counts_not_summaries(tmp_path, monkeypatch):
    # The last step used to receive every image's summary (a list of tokens, which Beam
    # copied several times). It now receives token counts per shard and side file: a
    # few hundred bytes whatever the number of images.
    real = ingest_module._write_summaries
    seen = str(tmp_path / "last-step-input.pkl")

    def spy(written, *args):
        # a file, not a list: the runner runs an unpickled copy of this function
        with open(seen, "wb") as fh:
            pickle.dump(written, fh)
        return real(written, *args)

    monkeypatch.setattr(ingest_module, "_write_summaries", spy)
    result = ingest(_coco(tmp_path, 40))
    assert sum(result.images.values()) == 40
    with open(seen, "rb") as fh:
        pickled = fh.read()
    assert b"ImageSummary" not in pickled and len(pickled) < 2000, len(pickled)
    assert pickle.loads(pickled).elements == 40


def _pipeline_bytes(tmp_path, count: int) -> int:
    """Size of the pipeline ingestion builds for ``count`` listed images."""
    items = tuple(
        SourceImage(i, f"img{i:06d}.jpg", f"/data/images/img{i:06d}.jpg", f"ann.json: {i}")
        for i in range(1, count + 1)
    )
    plan = ingest_module._Plan(("train", "eval"), items, ingest_module.LabelMap(()))
    output = str(tmp_path / str(count))
    options = IngestOptions("coco", "/data/images", output, annotations="/data/ann.json")
    pipeline = ingest_module.make_pipeline(["--direct_num_workers=1"])
    ingest_module._build(pipeline, options, plan)
    return len(pipeline.to_runner_api().SerializeToString())


def test_the_pipeline_does_not_embed_the_listed_images(tmp_path):
    # beam.Create(items) put every item in the pipeline (and several copies of it in the
    # driver); the items now go to spool files, the pipeline names the files.
    small, large = _pipeline_bytes(tmp_path, 100), _pipeline_bytes(tmp_path, 3000)
    assert large < small + 8 * 1024, (small, large)
    spooled = sorted((tmp_path / "3000" / ingest_module.ITEMS_SPOOL).iterdir())
    assert len(spooled) == beam_spool.ITEM_FILES  # 47 items per file
    items = [item for path in spooled for item in beam_spool.read_spooled(str(path))]
    assert [item.image_id for item in items] == list(range(1, 3001))


def test_the_spool_files_are_gone_after_a_run(tmp_path):
    result = ingest(_coco(tmp_path, 5))
    assert sum(result.images.values()) == 5
    assert not list((tmp_path / "out").rglob("*.pickle"))
