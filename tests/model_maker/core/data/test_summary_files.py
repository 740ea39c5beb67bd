"""Summaries written to side files by the shard writer and streamed into the outputs.

The streamed outputs must be byte for byte what ``write_outputs`` writes from the
same summaries in memory, whatever the number of files, their order inside, and
the sort chunk.
"""

from __future__ import annotations

import math
import os
import pickle
import random

import pytest

from model_maker.core.beam_io import ShardLayout, ShardWriterFn, WrittenCounts, check_shards
from model_maker.core.data import summary_files
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.process import ImageSummary
from model_maker.core.data.source import Issue
from model_maker.core.data.summary import label_map_from_pairs, write_outputs
from model_maker.core.errors import DataError

LABELS = LabelMap.from_names(["cat", "dog", "owl"])
OUTPUTS = ("train_annotations.json", "eval_annotations.json", "label_map.json", "stats.json")


def _summary(image_id: int, split: str, rng: random.Random) -> ImageSummary:
    """A written image with 0..3 boxes (odd floats included), some with issues; every
    7th is skipped, file names repeat (duplicate_file_name issues)."""
    if image_id % 7 == 0:
        issue = Issue("unreadable_image", f"img{image_id}.jpg", "truncated", split)
        return ImageSummary(image_id, split, None, (), (issue,))
    image = {"id": image_id, "file_name": f"img{image_id % 40}.jpg", "width": 64, "height": 48}
    anns = []
    for _ in range(rng.randrange(4)):
        x, y = rng.uniform(0, 30), rng.uniform(0, 20) / 3
        cat = rng.randrange(1, 4)
        box = [x, y, 10.5, 1 / 3]
        anns.append(
            {"image_id": image_id, "category_id": cat, "bbox": box, "area": 3.5, "iscrowd": 0}
        )
    issues = (Issue("box_clipped", f"img{image_id}.jpg box 1", "x", split),) if anns else ()
    pairs = tuple(sorted({(a["category_id"], LABELS.name_of(a["category_id"])) for a in anns}))
    return ImageSummary(image_id, split, image, tuple(anns), issues, pairs)


def _summaries(n: int = 150, seed: int = 3) -> list[ImageSummary]:
    rng = random.Random(seed)
    out = [_summary(i, "train" if i % 4 else "eval", rng) for i in range(1, n + 1)]
    rng.shuffle(out)
    return out


def _side_files(tmp_path, summaries, bundles: int) -> tuple[WrittenCounts, ShardLayout]:
    """Write ``summaries`` through the shard writer in ``bundles`` bundles, as ingestion
    does (payload None for a skipped image); returns the counted tokens."""
    prefixes = {s: str(tmp_path / f"Split-{s}" / "data") for s in ("train", "eval")}
    layout = ShardLayout(prefixes, str(tmp_path / ".temp"), ".gz")
    fn = ShardWriterFn(layout, summary_files.summary_line)
    counts = WrittenCounts()
    for b in range(bundles):
        fn.start_bundle()
        for s in summaries[b::bundles]:
            payload = None if s.image is None else f"record {s.image_id}".encode()
            for token in fn.process((s.split, payload, s)):
                counts.add(token)
        fn.finish_bundle()
    return counts, layout


def _read(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def test_a_summary_line_reads_back_equal():
    for s in _summaries(30):
        assert summary_files.summary_of_line(summary_files.summary_line(s)) == s


@pytest.mark.parametrize("bundles, chunk", [(1, 4096), (5, 7), (12, 1)])
def test_outputs_from_side_files_equal_write_outputs_byte_for_byte(tmp_path, bundles, chunk):
    summaries = _summaries()
    counts, layout = _side_files(tmp_path / "stage", summaries, bundles)
    # the tokens name the side files, but carry no summary
    assert len(counts.meta_files) == bundles and counts.elements == len(summaries)
    assert b"ImageSummary" not in pickle.dumps(counts)
    check_shards(counts, layout)
    extra = [Issue("unreadable_image", "z.txt", "not an image file name")]
    info = {"format": "coco", "input": "/data"}
    splits = ["train", "eval"]
    stats = summary_files.write_outputs_from_files(
        str(tmp_path / "streamed"), sorted(counts.meta_files), LABELS, splits, extra, info, chunk
    )
    want = write_outputs(str(tmp_path / "memory"), summaries, LABELS, splits, extra, info)
    assert stats == want
    assert stats["issue_counts"]["duplicate_file_name"] > 0  # the checks did run
    assert _read(tmp_path / "streamed") == _read(tmp_path / "memory")


def test_sorted_lines_merges_in_several_passes(tmp_path):
    summaries = _summaries(90)
    counts, _ = _side_files(tmp_path / "stage", summaries, 9)
    (tmp_path / "runs").mkdir()
    lines = list(
        summary_files.sorted_lines(sorted(counts.meta_files), str(tmp_path / "runs"), 4, 2)
    )
    keys = [(s.image_id, s.split) for s in map(summary_files.summary_of_line, lines)]
    assert keys == sorted((s.image_id, s.split) for s in summaries)
    # 23 runs of 4 lines, merged 2 at a time until 2 are left for the last merge
    assert len(os.listdir(tmp_path / "runs")) == 2


def test_the_label_map_is_derived_from_the_records_when_none_is_given(tmp_path):
    summaries = _summaries(60)
    image = {"id": 1000, "file_name": "x.jpg", "width": 4, "height": 4}
    renamed = ImageSummary(1000, "train", image, label_texts=((2, "hound"),))
    counts, _ = _side_files(tmp_path / "stage", [*summaries, renamed], 3)
    stats = summary_files.write_outputs_from_files(
        str(tmp_path / "out"), sorted(counts.meta_files), None, ["train", "eval"]
    )
    pairs = [p for s in summaries + [renamed] for p in s.label_texts]
    label_map, conflicts = label_map_from_pairs(pairs, "TFRecord input")
    assert LabelMap.load(str(tmp_path / "out" / "label_map.json")) == label_map
    assert len(conflicts) == 1 and "class id 2 has several names: dog, hound" in conflicts[0].detail
    assert conflicts[0].detail in [i["detail"] for i in stats["issues"]]


def test_a_nonfinite_number_in_a_side_file_writes_nothing(tmp_path):
    summaries = _summaries(40)
    image = {"id": 500, "file_name": "nan.jpg", "width": 60, "height": 40}
    ann = {"image_id": 500, "category_id": 1, "bbox": [math.nan, 0, 5, 5], "area": 1.0}
    bad = ImageSummary(500, "eval", image, ({**ann, "iscrowd": 0},))
    counts, _ = _side_files(tmp_path / "stage", [*summaries, bad], 2)
    with pytest.raises(DataError, match=r"eval_annotations\.json: .*not finite"):
        summary_files.write_outputs_from_files(
            str(tmp_path / "out"), sorted(counts.meta_files), LABELS, ["train", "eval"]
        )
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
