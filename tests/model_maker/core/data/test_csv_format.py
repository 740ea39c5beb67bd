"""The classification CSV format: ``path,label[,split]`` rows."""

import glob
import json
import os

import pytest
import tensorflow as tf
from PIL import Image

from model_maker.core.data.csv_format import read_csv
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.records import decode_example
from model_maker.core.data.split import hash_split
from model_maker.core.errors import DataError


def read_records(output, split):
    files = sorted(glob.glob(os.path.join(output, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no shards for {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [decode_example(r.numpy()) for r in dataset]


@pytest.fixture
def images(tmp_path):
    """tmp/data/img/{a0..a3,b0..b1}.png (a: dark, b: bright)."""
    folder = tmp_path / "data" / "img"
    folder.mkdir(parents=True)
    for name, grey in (("a", 30), ("b", 220)):
        for i in range(4 if name == "a" else 2):
            Image.new("RGB", (8, 6), (grey,) * 3).save(folder / f"{name}{i}.png")
    return folder


def write(tmp_path, text, name="labels.csv"):
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", ["", "path,label\n", " Path , LABEL \n"])
def test_two_columns_with_or_without_header(tmp_path, images, header):
    path = write(tmp_path, header + "img/a0.png,ants\nimg/b0.png,bees\n\nimg/a1.png,ants\n")
    index = read_csv(path)
    assert index.label_map.names == ["ants", "bees"]
    assert [(i.image_id, i.file_name, i.class_label, i.split) for i in index.images] == [
        (1, "img/a0.png", "ants", ""),
        (2, "img/b0.png", "bees", ""),
        (3, "img/a1.png", "ants", ""),
    ]
    assert index.images[0].path == str(images / "a0.png")
    first = 2 if header else 1
    assert index.images[2].origin == f"{path}:{first + 3} (img/a1.png)"  # a blank line between
    assert index.issues == () and index.hashed == 3 and index.splits == ()


def test_split_column_relative_and_absolute_paths(tmp_path, images):
    text = (
        "path,label,split\n"
        "img/a0.png,ants,train\n"
        f"{images / 'b0.png'},bees,test\n"
        "./img/a1.png,ants,\n"
        "img/../img/b1.png,bees,train\n"
    )
    index = read_csv(write(tmp_path, text))
    assert [(i.path, i.split) for i in index.images] == [
        (str(images / "a0.png"), "train"),
        (str(images / "b0.png"), "test"),
        (str(images / "a1.png"), ""),
        (str(images / "b1.png"), "train"),
    ]
    assert index.splits == ("train", "test") and index.hashed == 1


def test_bad_rows_are_counted_with_their_line(tmp_path, images):
    text = (
        "img/a0.png,ants\n"  # 1 ok
        "img/a1.png\n"  # 2 one column
        "img/a2.png,ants,train,extra\n"  # 3 four columns
        "img/a3.png,\n"  # 4 empty label
        ",bees\n"  # 5 empty path
        "img/b0.png,bees,my split\n"  # 6 bad split name
        "./img/a0.png,bees\n"  # 7 the image of line 1 again
        "img/b1.png,bees,eval\n"  # 8 ok
    )
    path = write(tmp_path, text)
    index = read_csv(path)
    assert [i.file_name for i in index.images] == ["img/a0.png", "img/b1.png"]
    assert [(i.kind, i.where, i.detail) for i in index.issues] == [
        ("invalid_row", f"{path}:2", "1 column(s), expected 2 or 3 (path,label[,split])"),
        ("invalid_row", f"{path}:3", "4 column(s), expected 2 or 3 (path,label[,split])"),
        ("invalid_row", f"{path}:4", "empty label for img/a3.png"),
        ("invalid_row", f"{path}:5", "empty path"),
        (
            "invalid_row",
            f"{path}:6",
            "split 'my split' is not a valid name (letters, digits, '_', '-', '.')",
        ),
        ("invalid_row", f"{path}:7", "./img/a0.png is listed again (first on line 1)"),
    ]


def test_a_header_fixes_the_column_count(tmp_path, images):
    path = write(tmp_path, "path,label,split\nimg/a0.png,ants,train\nimg/b0.png,bees\n")
    index = read_csv(path)
    assert len(index.images) == 1
    (issue,) = index.issues
    assert issue.where == f"{path}:3" and issue.detail.startswith("2 column(s), expected 3,")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty CSV"),
        ("\n\n", "empty CSV"),
        ("path,label\n", "empty CSV (a header, no rows"),
        ("image,class\na.png,x\n", ":1: header 'image,class' not understood"),
        ("a.png\nb.png,\n", "none of the 2 row(s) is usable; first: "),
        ('"a.png,x\n', "malformed CSV"),
    ],
)
def test_unusable_csv_is_a_data_error(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as error:
        read_csv(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_csv_and_a_folder_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="nothing.csv: CSV file not found"):
        read_csv(tmp_path / "nothing.csv")
    with pytest.raises(DataError, match="is a folder; the csv format reads one CSV file"):
        read_csv(tmp_path)


def test_byte_order_mark_is_no_data(tmp_path, images):
    path = tmp_path / "data" / "bom.csv"
    path.write_bytes("path,label\nimg/a0.png,ants\n".encode("utf-8-sig"))
    index = read_csv(path)
    assert [i.file_name for i in index.images] == ["img/a0.png"] and index.issues == ()


def test_ingest_csv_with_splits_missing_files_and_bad_rows(tmp_path, images):
    text = (
        "path,label,split\n"
        "img/a0.png,ants,train\n"
        "img/a1.png,ants,train\n"
        "img/a2.png,ants,test\n"
        "img/b0.png,bees,test\n"
        "img/b1.png,bees,\n"
        "img/gone.png,bees,train\n"
        "img/a3.png,,train\n"
    )
    path = write(tmp_path, text)
    out = tmp_path / "out"
    result = ingest(IngestOptions("csv", str(path), str(out), split_ratios={"train": 1.0}))
    assert result.splits == ("train", "test")
    assert result.images == {"train": 3, "test": 2}
    assert [(c.id, c.name) for c in result.label_map.classes] == [(1, "ants"), (2, "bees")]
    assert sorted((r.filename, r.class_label, r.class_text) for r in read_records(out, "test")) == [
        ("img/a2.png", 1, "ants"),
        ("img/b0.png", 2, "bees"),
    ]
    train = sorted((r.filename, r.class_label) for r in read_records(out, "train"))
    assert train == [("img/a0.png", 1), ("img/a1.png", 1), ("img/b1.png", 2)]
    stats = json.loads(open(result.stats_path).read())
    assert stats["format"] == "csv"
    assert stats["issue_counts"] == {"invalid_row": 1, "missing_image": 1}
    issues = {i["kind"]: i for i in stats["issues"]}
    assert issues["missing_image"]["where"] == f"{path}:7 (img/gone.png)"
    assert issues["missing_image"]["split"] == "train"
    assert issues["invalid_row"]["where"] == f"{path}:8"
    assert stats["splits"]["test"]["classes"] == {
        "ants": {"images": 1, "boxes": 0},
        "bees": {"images": 1, "boxes": 0},
    }
    with pytest.raises(DataError, match=r"^strict: .*labels\.csv:7 \(img/gone\.png\).*and 1 more"):
        ingest(IngestOptions("csv", str(path), str(out), split_ratios={"train": 1.0}, strict=True))


def test_ingest_csv_without_split_uses_the_hash_split(tmp_path, images):
    rows = "".join(f"img/a{i}.png,ants\n" for i in range(4))
    path = write(tmp_path, rows + "img/b0.png,bees\nimg/b1.png,bees\n")
    ratios = {"train": 0.5, "eval": 0.5}
    result = ingest(IngestOptions("csv", str(path), str(tmp_path / "out"), split_ratios=ratios))
    assert result.splits == ("train", "eval")
    assert sum(result.images.values()) == 6 and result.issues == ()
    # the hash of the path as written decides, as for the folder format
    expected = {"train": [], "eval": []}
    for line in (rows + "img/b0.png,bees\nimg/b1.png,bees\n").splitlines():
        expected[hash_split(line.split(",")[0], ratios)].append(line.split(",")[0])
    for split in result.splits:
        names = sorted(r.filename for r in read_records(result.output, split))
        assert names == sorted(expected[split])
