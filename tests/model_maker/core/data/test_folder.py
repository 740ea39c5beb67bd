"""Class folders: one root (hash split) or one root per split (``split_image_dirs``)."""

import glob
import io
import json
import logging
import os

import pytest
import tensorflow as tf
from PIL import Image

from model_maker.core.data.folder import read_folders, read_split_folders
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.records import decode_example
from model_maker.core.errors import DataError


def read_records(output, split):
    files = sorted(glob.glob(os.path.join(output, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no shards for {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [decode_example(r.numpy()) for r in dataset]


@pytest.fixture
def split_tree(tmp_path, class_folders):
    """train/{birds 0 (empty folder), cats 3, dogs 2}, val/{birds 1, cats 1} (no dogs folder),
    and a notes file in train/cats."""
    root = tmp_path / "data"
    class_folders(root / "train", {"birds": 0, "cats": 3, "dogs": 2})
    class_folders(root / "val", {"birds": 1, "cats": 1})
    (root / "train" / "cats" / "notes.txt").write_text("x")
    return root


def test_split_folders_share_one_label_map_and_report_absent_classes(split_tree):
    index = read_split_folders(split_tree, {"train": "train", "eval": "val"})
    assert [(c.id, c.name) for c in index.label_map.classes] == [
        (1, "birds"),
        (2, "cats"),
        (3, "dogs"),
    ]
    assert [i.image_id for i in index.images] == [1, 2, 3, 4, 5, 6, 7]
    assert [(i.split, i.file_name, i.class_label) for i in index.images] == [
        ("train", "train/cats/0.png", "cats"),
        ("train", "train/cats/1.png", "cats"),
        ("train", "train/cats/2.png", "cats"),
        ("train", "train/dogs/0.png", "dogs"),
        ("train", "train/dogs/1.png", "dogs"),
        ("eval", "val/birds/0.png", "birds"),
        ("eval", "val/cats/0.png", "cats"),
    ]
    assert index.images[5].path == str(split_tree / "val" / "birds" / "0.png")
    assert dict(index.absent) == {"train": ("birds",), "eval": ("dogs",)}
    assert dict(index.folders) == {
        "train": str(split_tree / "train"),
        "eval": str(split_tree / "val"),
    }
    assert index.ignored == ((str(split_tree / "train" / "cats" / "notes.txt"), "train"),)


def test_split_folder_may_be_absolute(split_tree, tmp_path, class_folders):
    elsewhere = class_folders(tmp_path / "elsewhere", {"cats": 2})
    dirs = {"train": "train", "eval": "val", "test": str(elsewhere)}
    index = read_split_folders(split_tree, dirs)
    tests = [i for i in index.images if i.split == "test"]
    assert [i.file_name for i in tests] == [f"{elsewhere}/cats/0.png", f"{elsewhere}/cats/1.png"]
    assert [i.image_id for i in tests] == [8, 9]
    assert dict(index.absent) == {
        "train": ("birds",),
        "eval": ("dogs",),
        "test": ("birds", "dogs"),
    }


def test_split_folder_errors_name_the_folder(split_tree, class_folders):
    with pytest.raises(DataError, match=r"/data/test: folder of split eval not found"):
        read_split_folders(split_tree, {"train": "train", "eval": "test"})
    with pytest.raises(DataError, match="splits train and eval read the same folder"):
        read_split_folders(split_tree, {"train": "train", "eval": str(split_tree / "train")})
    (split_tree / "flat").mkdir()
    (split_tree / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"/flat: no class sub-folders \(folder of split eval\)"):
        read_split_folders(split_tree, {"train": "train", "eval": "flat"})
    class_folders(split_tree / "more", {"fish": 0})
    with pytest.raises(DataError, match=r"/more/fish: class folder holds no image files in any"):
        read_split_folders(split_tree, {"eval": "val", "extra": "more"})


def test_a_root_of_split_folders_fails_with_the_setting_to_use(split_tree):
    with pytest.raises(DataError) as error:
        read_folders(split_tree)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{split_tree}: its sub-folders hold no image files, but train, val")
    assert "data.split_image_dirs={train: train, eval: val}" in message
    assert "--split-dir train=train --split-dir eval=val" in message


def test_an_empty_class_folder_of_one_root_is_still_an_error(tmp_path, class_folders):
    class_folders(tmp_path, {"cats": 2, "dogs": 0})
    with pytest.raises(DataError, match=r"/dogs: class folder holds no image files$"):
        read_folders(tmp_path)


def test_ingest_split_folders(split_tree, tmp_path, caplog):
    options = IngestOptions(
        "folder",
        str(split_tree),
        str(tmp_path / "out"),
        split_image_dirs={"train": "train", "eval": "val"},
    )
    with caplog.at_level(logging.WARNING, logger="qatflow.ingest"):
        result = ingest(options)
    assert result.splits == ("train", "eval") and result.images == {"train": 5, "eval": 2}
    assert result.label_map.names == ["birds", "cats", "dogs"]
    records = {s: read_records(result.output, s) for s in result.splits}
    # the same class, the same id in every split; ids unique over the splits
    assert sorted((r.filename, r.class_label, r.class_text) for r in records["eval"]) == [
        ("val/birds/0.png", 1, "birds"),
        ("val/cats/0.png", 2, "cats"),
    ]
    assert {(r.class_label, r.class_text) for r in records["train"]} == {(2, "cats"), (3, "dogs")}
    ids = [int(r.source_id) for split in records.values() for r in split]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6, 7]
    stats = json.loads(open(result.stats_path).read())
    assert stats["splits"]["train"]["classes"] == {
        "cats": {"images": 3, "boxes": 0},
        "dogs": {"images": 2, "boxes": 0},
    }
    assert stats["empty_classes"] == {"train": ["birds"], "eval": ["dogs"]}
    assert stats["imbalance"] == {}
    assert stats["issue_counts"] == {"unreadable_image": 1}
    (issue,) = result.issues
    assert issue.where.endswith("train/cats/notes.txt") and issue.split == "train"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"split train: no images of class(es) birds (birds: no image files in {split_tree}/train)"
        in warnings
    )
    assert (
        f"split eval: no images of class(es) dogs (dogs: no image files in {split_tree}/val)"
        in warnings
    )


def test_hymenoptera_root_needs_split_dirs(hymenoptera_dir):
    with pytest.raises(DataError, match=r"train, val hold class folders with images") as error:
        read_folders(hymenoptera_dir)
    assert "data.split_image_dirs={train: train, eval: val}" in str(error.value)


def test_hymenoptera_ingests_per_split_and_names_only_the_gif(hymenoptera_dir, tmp_path):
    """The real data set: 245 train files, 153 val files, one GIF placeholder."""
    result = ingest(
        IngestOptions(
            "folder",
            str(hymenoptera_dir),
            str(tmp_path),
            split_image_dirs={"train": "train", "eval": "val"},
        ),
        ["--direct_num_workers=1"],
    )
    assert result.images == {"train": 245, "eval": 153}
    classes = {s: result.stats["splits"][s]["classes"] for s in result.splits}
    assert classes == {
        "train": {"ants": {"images": 124, "boxes": 0}, "bees": {"images": 121, "boxes": 0}},
        "eval": {"ants": {"images": 70, "boxes": 0}, "bees": {"images": 83, "boxes": 0}},
    }
    assert [(c.id, c.name) for c in result.label_map.classes] == [(1, "ants"), (2, "bees")]
    gif = str(hymenoptera_dir / "train" / "ants" / "imageNotFound.gif")
    assert result.stats["issue_counts"] == {"converted_format": 1, "converted_palette": 1}
    assert {i.where for i in result.issues} == {gif}
    assert {(i.kind, i.detail) for i in result.issues} == {
        ("converted_format", "gif re-encoded as PNG"),
        ("converted_palette", "mode P"),
    }
    assert result.stats["imbalance"] == {} and result.stats["empty_classes"] == {}
    train = {r.filename: r for r in read_records(result.output, "train")}
    ids = {int(r.source_id) for r in train.values()}
    ids |= {int(r.source_id) for r in read_records(result.output, "eval")}
    assert len(ids) == 398
    placeholder = train["train/ants/imageNotFound.gif"]
    assert (placeholder.format, placeholder.class_label, placeholder.class_text) == (
        "png",
        1,
        "ants",
    )
    assert Image.open(io.BytesIO(placeholder.encoded)).mode == "RGB"
    assert train["train/ants/formica.jpeg"].format == "jpeg"
