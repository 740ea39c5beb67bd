"""Shard writing and its commit: files named as Beam names them, nothing lost or duplicated."""

from __future__ import annotations

import gzip
import os

import apache_beam as beam
import pytest

from model_maker.core.beam_io import (
    ShardError,
    ShardLayout,
    ShardWriterFn,
    WrittenCounts,
    check_shards,
    commit_shards,
    count_written,
    run,
    write_shards,
)
from model_maker.core.data.ingest import make_pipeline


def read_tfrecords(paths) -> list[bytes]:
    import tensorflow as tf

    data = tf.data.TFRecordDataset(sorted(paths), compression_type="GZIP")
    return [r.numpy() for r in data]


def layout(tmp_path, num_shards=0, kind="tfrecord", suffix=".gz") -> ShardLayout:
    prefixes = {d: str(tmp_path / f"Split-{d}" / "data") for d in ("train", "eval")}
    return ShardLayout(prefixes, str(tmp_path / ".temp"), suffix, kind, num_shards)


def write_bundles(fn: ShardWriterFn, bundles, finish: bool = True) -> list:
    """Run ``fn`` over ``bundles`` as a runner would; ``finish=False`` skips the last
    bundle's ``finish_bundle`` (a bundle that never closed its shard)."""
    tokens = []
    for i, bundle in enumerate(bundles):
        fn.start_bundle()
        for element in bundle:
            tokens.extend(fn.process(element))
        if finish or i < len(bundles) - 1:
            fn.finish_bundle()
    return tokens


def test_bundles_become_numbered_shards_and_the_temp_folder_goes(tmp_path):
    lay = layout(tmp_path)
    fn = ShardWriterFn(lay)
    first = [("train", b"a", 1), ("eval", b"b", 2), ("train", None, 3)]
    second = [("train", b"c", 4)]
    tokens = write_bundles(fn, [first, second])
    assert [t.meta for t in tokens] == [1, 2, 3, 4]
    commit = commit_shards(tokens, lay)
    names = [os.path.basename(p) for p in commit.files["train"]]
    assert names == ["data-00000-of-00002.gz", "data-00001-of-00002.gz"]
    assert sorted(read_tfrecords(commit.files["train"])) == [b"a", b"c"]
    assert read_tfrecords(commit.files["eval"]) == [b"b"]
    assert commit.records == {"train": 2, "eval": 1}
    assert not (tmp_path / ".temp").exists()


def test_a_destination_without_records_gets_one_empty_shard(tmp_path):
    lay = layout(tmp_path)
    commit = commit_shards(write_bundles(ShardWriterFn(lay), [[("train", b"x", 0)]]), lay)
    (empty,) = commit.files["eval"]
    assert os.path.basename(empty) == "data-00000-of-00001.gz"
    assert read_tfrecords([empty]) == [] and commit.records["eval"] == 0


def test_a_shard_that_was_never_closed_fails_the_commit(tmp_path):
    # What the DaskRunner did to Beam's sinks: the bundle's finishing step got lost.
    lay = layout(tmp_path)
    tokens = write_bundles(ShardWriterFn(lay), [[("train", b"a", 0)], [("train", b"b", 1)]], False)
    with pytest.raises(ShardError, match=r"1 shard\(s\) do not hold what went in.*never closed"):
        commit_shards(tokens, lay)
    assert not list((tmp_path / "Split-train").glob("data-*"))  # nothing published


def test_lost_or_duplicated_tokens_fail_the_commit(tmp_path):
    lay = layout(tmp_path)
    tokens = write_bundles(ShardWriterFn(lay), [[("train", b"a", 0), ("train", b"b", 1)]])
    with pytest.raises(ShardError, match="2 records written, 3 went in"):
        commit_shards(tokens + tokens[:1], lay)
    with pytest.raises(ShardError, match="2 records written, 1 went in"):
        commit_shards(tokens[:1], lay)


def test_records_for_an_unknown_destination_fail_the_commit(tmp_path):
    lay = layout(tmp_path)
    tokens = write_bundles(ShardWriterFn(lay), [[("test", b"a", 0)]])
    with pytest.raises(ShardError, match=r"unknown destination\(s\) \['test'\]"):
        commit_shards(tokens, lay)


def _publish(tokens, lay):
    return commit_shards(tokens, lay).records


@pytest.mark.parametrize("num_shards", [0, 3])
def test_direct_runner_pipeline_writes_every_record_once(tmp_path, num_shards):
    lay = layout(tmp_path, num_shards)
    elements = [("train" if i % 3 else "eval", f"r{i}".encode(), i) for i in range(20)]
    pipeline = make_pipeline(["--direct_num_workers=1"])
    _ = (
        write_shards(pipeline | beam.Create(elements), lay)
        | beam.combiners.ToList()
        | beam.Map(_publish, lay)
    )
    run(pipeline)
    for split in ("train", "eval"):
        files = sorted((tmp_path / f"Split-{split}").glob("data-*.gz"))
        if num_shards:
            assert [f.name for f in files] == [f"data-{i:05d}-of-00003.gz" for i in range(3)]
        want = sorted(p for s, p, _ in elements if s == split)
        assert sorted(read_tfrecords(files)) == want
    assert not (tmp_path / ".temp").exists()


def test_text_lines_uncompressed(tmp_path):
    lay = layout(tmp_path, kind="text", suffix=".jsonl")
    tokens = write_bundles(ShardWriterFn(lay), [[("eval", '{"a": 1}', 0), ("eval", "é", 1)]])
    (path,) = commit_shards(tokens, lay).files["eval"]
    assert path.endswith("data-00000-of-00001.jsonl")
    with open(path, encoding="utf-8") as fh:
        assert fh.read() == '{"a": 1}\né\n'


def test_gz_suffix_gzips_tfrecord_frames(tmp_path):
    lay = layout(tmp_path)
    tokens = write_bundles(ShardWriterFn(lay), [[("eval", b"z", 0)]])
    (path,) = commit_shards(tokens, lay).files["eval"]
    with gzip.open(path) as fh:
        frame = fh.read()
    # length (8 bytes), its masked crc (4), the data, its masked crc (4)
    assert len(frame) == 17 and frame[:8] == (1).to_bytes(8, "little") and frame[12:13] == b"z"


def test_default_level_gzips_as_beam_does_and_level_0_stores(tmp_path):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import _TFRecordUtil

    payloads = [b"a" * 5000, b"b" * 3000]
    reference = tmp_path / "beam.gz"
    with FileSystems.create(str(reference), compression_type=CompressionTypes.GZIP) as fh:
        for payload in payloads:
            _TFRecordUtil.write_record(fh, payload)
    sizes = {}
    for level in (-1, 0):
        lay = ShardLayout(
            {"train": str(tmp_path / f"l{level}" / "data")},
            str(tmp_path / f"t{level}"),
            ".gz",
            compression_level=level,
        )
        tokens = write_bundles(
            ShardWriterFn(lay), [[("train", p, i) for i, p in enumerate(payloads)]]
        )
        (path,) = commit_shards(tokens, lay).files["train"]
        assert read_tfrecords([path]) == payloads
        sizes[level] = os.path.getsize(path)
        if level == -1:  # byte for byte what Beam's GZIP writer (zlib's default level) writes
            assert open(path, "rb").read() == reference.read_bytes()
    framed = sum(len(p) + 16 for p in payloads)
    assert sizes[-1] < 200 < framed < sizes[0] < framed + 100  # stored: framing only


def test_layout_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        ShardLayout({"a": "x"}, str(tmp_path), kind="csv")
    with pytest.raises(ValueError, match="compression_level"):
        ShardLayout({"a": "x"}, str(tmp_path), compression_level=10)
    with pytest.raises(ValueError, match="num_shards"):
        ShardLayout({"a": "x"}, str(tmp_path), num_shards=-1)


def _lines(path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def test_meta_line_sends_the_metadata_to_one_side_file_per_bundle(tmp_path):
    lay = layout(tmp_path)
    fn = ShardWriterFn(lay, meta_line=lambda meta: f"meta {meta}")
    first = [("train", b"a", 1), ("eval", b"b", 2), ("train", None, 3)]
    tokens = write_bundles(fn, [first, [("train", b"c", 4)]])
    assert all(t.meta is None for t in tokens)
    side = sorted({t.meta_file for t in tokens})
    assert len(side) == 2 and all(p.endswith(".meta") for p in side)
    assert sorted(_lines(p) for p in side) == [["meta 1", "meta 2", "meta 3"], ["meta 4"]]
    counts = check_shards(tokens, lay)
    assert counts.elements == 4 and sorted(counts.meta_files.values()) == [1, 3]
    assert commit_shards(counts, lay).records == {"train": 2, "eval": 1}
    assert not (tmp_path / ".temp").exists()  # side files go with the temporary folder


def test_a_side_file_never_closed_or_short_fails_the_check(tmp_path):
    lay = layout(tmp_path)
    fn = ShardWriterFn(lay, meta_line=str)
    tokens = write_bundles(fn, [[("train", b"a", 0)], [("eval", None, 1)]], finish=False)
    with pytest.raises(ShardError, match=r"meta-.*\.meta: never closed \(1 records went in\)"):
        check_shards(tokens, lay)
    tokens = write_bundles(fn, [[("train", b"a", 0), ("train", None, 1)]])
    with pytest.raises(ShardError, match=r"\.meta: 2 records written, 1 went in"):
        commit_shards(tokens[:1], lay)
    assert not list((tmp_path / "Split-train").glob("data-*"))  # nothing published


def _check_counts(counts: WrittenCounts, lay: ShardLayout, out: str) -> int:
    check_shards(counts, lay)
    lines = sorted(line for path in counts.meta_files for line in _lines(path))
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return commit_shards(counts, lay).records["train"]


@pytest.mark.parametrize("num_shards", [0, 3])
def test_count_written_hands_the_last_step_counts_per_shard(tmp_path, num_shards):
    lay = layout(tmp_path, num_shards)
    elements = [("train" if i % 3 else "eval", f"r{i}".encode() if i % 5 else None, i)
                for i in range(30)]  # fmt: skip
    out = str(tmp_path / "meta.txt")
    pipeline = make_pipeline(["--direct_num_workers=1"])
    _ = count_written(
        write_shards(pipeline | beam.Create(elements), lay, meta_line=lambda m: f"{m:03d}")
    ) | beam.Map(_check_counts, lay, out)
    run(pipeline)
    with open(out, encoding="utf-8") as fh:
        assert fh.read().split() == [f"{i:03d}" for i in range(30)]
    for split in ("train", "eval"):
        files = sorted((tmp_path / f"Split-{split}").glob("data-*.gz"))
        want = sorted(p for s, p, _ in elements if s == split and p is not None)
        assert sorted(read_tfrecords(files)) == want
    assert not (tmp_path / ".temp").exists()


def test_ingest_publishes_nothing_when_an_image_goes_missing(tmp_path, monkeypatch):
    # A runner that drops an element between the steps (as the DaskRunner dropped what
    # Beam's sinks emit when a bundle finishes): the run fails, the output stays empty.
    from model_maker.core.data import ingest as ingest_module
    from model_maker.core.data.demo_data import generate_demo_data

    data = generate_demo_data(tmp_path / "src", num_images=6, seed=2, image_size=64)
    real = ingest_module._Process.process

    def lossy(self, element, label_map):
        for out in real(self, element, label_map):
            if out[2].image_id != 3:
                yield out

    monkeypatch.setattr(ingest_module._Process, "process", lossy)
    options = ingest_module.IngestOptions(
        format="coco",
        input=data.images_dir,
        annotations=data.annotations,
        output=str(tmp_path / "out"),
    )
    with pytest.raises(Exception, match="6 images went into the pipeline but 5 came out"):
        ingest_module.ingest(options)
    assert os.listdir(tmp_path / "out") == []
