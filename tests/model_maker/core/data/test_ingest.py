"""The Beam ingestion pipeline end to end, on tiny inputs (DirectRunner, in-process)."""

import glob
import io
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

from model_maker.core.data.demo_data import generate_demo_data
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.records import decode_example, encode_example
from model_maker.core.data.split import hash_split
from model_maker.core.errors import DataError


def read_records(output, split):
    files = sorted(glob.glob(os.path.join(output, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no shards for {split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return [decode_example(r.numpy()) for r in dataset]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data = generate_demo_data(root / "src", num_images=12, seed=5)
    result = ingest(
        IngestOptions(
            format="coco",
            input=data.images_dir,
            annotations=data.annotations,
            output=str(root / "out"),
            split_ratios={"train": 0.75, "eval": 0.25},
        )
    )
    return data, result


def test_record_shards_are_gzip_framed_but_not_compressed(demo):
    """The records are JPEG bytes, compressed already: the shards store them (zlib level
    0), so they read as GZIP yet are a little larger than the records they hold."""
    import gzip

    _, result = demo
    for split in result.splits:
        for path in glob.glob(os.path.join(result.output, f"Split-{split}", "*.gz")):
            raw = gzip.open(path).read()
            assert raw and len(raw) < os.path.getsize(path) < len(raw) + 200


def test_demo_round_trip_boxes_exact(demo):
    data, result = demo
    source = json.load(open(data.annotations))
    by_image = {}
    for ann in source["annotations"]:
        x, y, w, h = ann["bbox"]
        by_image.setdefault(str(ann["image_id"]), []).append(
            (y / 256, x / 256, (y + h) / 256, (x + w) / 256, ann["category_id"])
        )
    seen = {}
    for split in result.splits:
        for example in read_records(result.output, split):
            seen[example.source_id] = split
            pairs = zip(example.boxes, example.labels, strict=True)
            decoded = sorted((*b, label) for b, label in pairs)
            expected = sorted(by_image[example.source_id])
            np.testing.assert_allclose(decoded, expected, atol=1e-6, rtol=0)
            assert list(example.texts) == [result.label_map.name_of(lb) for lb in example.labels]
    assert len(seen) == 12 and set(seen.values()) == {"train", "eval"}
    assert sum(result.images.values()) == 12
    assert sum(result.boxes.values()) == len(source["annotations"])
    assert result.issues == ()


def test_ground_truth_loads_in_pycocotools_with_record_ids(demo):
    _, result = demo
    for split in result.splits:
        gt = COCO(result.annotations_path(split))
        records = read_records(result.output, split)
        assert sorted(gt.getImgIds()) == sorted(int(r.source_id) for r in records)
        assert len(gt.getAnnIds()) == sum(
            len(r.labels) == 0 or len(r.labels) for r in records
        ) - sum(1 for r in records if not r.labels)
        assert sorted(gt.getCatIds()) == [1, 2, 3]
    stats = json.load(open(result.stats_path))
    assert stats["total"]["images"] == 12
    classes = {c["name"] for c in json.load(open(result.label_map_path))["classes"]}
    assert classes == {"circle", "square", "triangle"}


def test_raccoon_voc(raccoon_dir, tmp_path):
    result = ingest(IngestOptions(format="voc", input=str(raccoon_dir), output=str(tmp_path)))
    assert sum(result.images.values()) == 200
    assert sum(result.boxes.values()) == 217
    assert result.label_map.names == ["raccoon"] and result.label_map.id_of("raccoon") == 1
    grey = [i for i in result.issues if i.kind == "converted_grayscale"]
    assert len(grey) == 3 and result.stats["issue_counts"] == {"converted_grayscale": 3}
    assert {i.where.split(" (")[1].rstrip(")") for i in grey} == {
        "raccoon-150.jpg",
        "raccoon-152.jpg",
        "raccoon-161.jpg",
    }
    for split in result.splits:
        gt = COCO(result.annotations_path(split))
        assert len(gt.getImgIds()) == result.images[split]
        assert len(gt.getAnnIds()) == result.boxes[split]
        assert result.stats["splits"][split]["classes"]["raccoon"]["boxes"] == result.boxes[split]
    records = read_records(str(tmp_path), "train") + read_records(str(tmp_path), "eval")
    assert len(records) == 200
    for record in records:
        image = Image.open(io.BytesIO(record.encoded))
        assert image.mode == "RGB" and image.size == (record.width, record.height)


def _save(image, path, **kwargs):
    image.save(path, **kwargs)


@pytest.fixture
def messy_coco(tmp_path):
    """One image per kind of problem (see the comments), COCO format."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), np.uint8))
    _save(rgb, images / "ok.jpg")
    _save(rgb.convert("L"), images / "grey.png")
    _save(rgb.convert("RGBA"), images / "rgba.png")
    _save(rgb.convert("CMYK"), images / "cmyk.jpg")
    _save(rgb.convert("P"), images / "palette.png")
    _save(
        Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257), images / "deep.png"
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(rgb, images / "rotated.jpg", exif=exif)
    full = io.BytesIO()
    rgb.save(full, format="JPEG")
    (images / "truncated.jpg").write_bytes(full.getvalue()[:300])
    (images / "text.jpg").write_text("not an image")
    names = [
        "ok.jpg",
        "grey.png",
        "rgba.png",
        "cmyk.jpg",
        "palette.png",
        "deep.png",
        "rotated.jpg",
        "truncated.jpg",
        "text.jpg",
        "missing.jpg",
    ]
    data = {"images": [], "annotations": [], "categories": [{"id": 4, "name": "thing"}]}
    for i, name in enumerate(names, start=1):
        size = (40, 60) if name == "rotated.jpg" else (60, 40)
        data["images"].append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
        if name != "ok.jpg":  # ok.jpg is a negative
            data["annotations"].append(
                {"id": i, "image_id": i, "category_id": 4, "bbox": [5, 5, 20, 20]}
            )
    data["annotations"] += [
        {"id": 100, "image_id": 2, "category_id": 4, "bbox": [50, 30, 20, 20]},  # clipped
        {"id": 101, "image_id": 2, "category_id": 4, "bbox": [10, 10, 0, 5]},  # zero area
        {"id": 102, "image_id": 3, "category_id": 4, "bbox": [10, 10, -3, 5]},  # negative
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return images, path


def test_bad_input_is_repaired_or_skipped_and_counted(messy_coco, tmp_path):
    images, annotations = messy_coco
    out = tmp_path / "out"
    options = IngestOptions("coco", str(images), str(out), str(annotations), {"all": 1.0})
    result = ingest(options)
    assert result.stats["issue_counts"] == {
        "box_clipped": 1,
        "box_dropped": 2,
        "converted_16bit": 1,
        "converted_cmyk": 1,
        "converted_grayscale": 1,
        "converted_palette": 1,
        "converted_rgba": 1,
        "exif_rotated": 1,
        "missing_image": 1,
        "unreadable_image": 2,
    }
    assert result.images == {"all": 7} and result.stats["splits"]["all"]["negatives"] == 1
    assert result.boxes == {"all": 7}
    by_kind = {i.kind: i for i in result.issues}
    assert "annotation id 100" in by_kind["box_clipped"].where
    assert "missing.jpg" in by_kind["missing_image"].where
    records = {r.filename: r for r in read_records(str(out), "all")}
    assert (records["rotated.jpg"].width, records["rotated.jpg"].height) == (40, 60)
    np.testing.assert_allclose(
        records["grey.png"].boxes[1], (30 / 40, 50 / 60, 1.0, 1.0), atol=1e-6
    )
    for record in records.values():
        assert Image.open(io.BytesIO(record.encoded)).mode == "RGB"

    strict = IngestOptions(
        "coco", str(images), str(out), str(annotations), {"all": 1.0}, strict=True
    )
    with pytest.raises(DataError) as error:
        ingest(strict)
    message = str(error.value)
    assert message.startswith("strict: ") and "\n" not in message and "and 11 more" in message

    no_negatives = IngestOptions(
        "coco", str(images), str(out), str(annotations), {"all": 1.0}, keep_negatives=False
    )
    assert ingest(no_negatives).images == {"all": 6}


def test_malformed_voc_xml_fails_naming_file_line_column(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "x.xml").write_text(
        "<annotation>\n<filename>x.jpg</filename>\n<size>"
    )
    with pytest.raises(DataError, match=r"x\.xml:3:\d+: malformed XML"):
        ingest(IngestOptions("voc", str(tmp_path), str(tmp_path / "out")))


def test_tfrecords_pass_through_validated(demo, tmp_path):
    _, first = demo
    result = ingest(IngestOptions("tfrecord", first.output, str(tmp_path / "again")))
    assert set(result.splits) == set(first.splits) and result.images == first.images
    assert result.label_map == first.label_map
    for split in first.splits:
        before = sorted(encode_example(r) for r in read_records(first.output, split))
        after = sorted(encode_example(r) for r in read_records(result.output, split))
        assert before == after
        assert (
            COCO(result.annotations_path(split)).getImgIds()
            == COCO(first.annotations_path(split)).getImgIds()
        )


def test_invalid_and_duplicate_tfrecords(demo, tmp_path):
    _, first = demo
    records = read_records(first.output, "train")
    good = records[0]
    bad = good.__class__(
        **{
            **good.__dict__,
            "source_id": "900",
            "boxes": ((0.5, 0.1, 0.2, 0.3),),
            "labels": (1,),
            "texts": ("circle",),
            "areas": (1.0,),
            "is_crowd": (0,),
        }
    )
    folder = tmp_path / "in"
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "data.tfrecord")) as writer:
        for example in (good, bad):
            writer.write(encode_example(example))
    result = ingest(
        IngestOptions("tfrecord", str(folder), str(tmp_path / "out"), split_ratios={"all": 1.0})
    )
    assert result.images == {"all": 1}
    (issue,) = result.issues
    assert (
        issue.kind == "invalid_record"
        and "'900'" in issue.where
        and "not normalised" in issue.detail
    )

    with tf.io.TFRecordWriter(str(folder / "data.tfrecord")) as writer:
        writer.write(encode_example(good))
        writer.write(encode_example(good))
        writer.write(encode_example(replace(good, source_id="raccoon-1.jpg")))
    with pytest.raises(DataError) as error:
        ingest(
            IngestOptions("tfrecord", str(folder), str(tmp_path / "out"), split_ratios={"all": 1.0})
        )
    message = str(error.value)
    assert "'raccoon-1.jpg': image/source_id is not an integer" in message
    assert "--rewrite" in message and message.endswith("failed-stats.json)")
    assert "and 1 more" in message
    # The failed run left the first run's outputs as they were, its stats aside.
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["total"]["images"] == 1
    stats = json.loads((tmp_path / "out" / "failed-stats.json").read_text())
    errors = [i["detail"] for i in stats["issues"] if i["kind"] == "error"]
    assert any(f"image id {good.source_id}: duplicate image id" in e for e in errors)


def test_tfrecord_rewrite_repairs_images(demo, tmp_path):
    _, first = demo
    record = read_records(first.output, "train")[0]
    grey = io.BytesIO()
    Image.open(io.BytesIO(record.encoded)).convert("L").save(grey, format="PNG")
    folder = tmp_path / "in"
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "data.tfrecord")) as writer:
        writer.write(
            encode_example(
                record.__class__(**{**record.__dict__, "encoded": grey.getvalue(), "format": "png"})
            )
        )
    options = IngestOptions(
        "tfrecord",
        str(folder),
        str(tmp_path / "out"),
        split_ratios={"all": 1.0},
        rewrite_tfrecords=True,
    )
    result = ingest(options)
    assert [i.kind for i in result.issues] == ["converted_grayscale"]
    (out,) = read_records(result.output, "all")
    assert Image.open(io.BytesIO(out.encoded)).mode == "RGB"
    np.testing.assert_allclose(out.boxes, record.boxes, atol=1e-6)
    assert out.labels == record.labels


def test_class_folders(tmp_path):
    for name, colour in (("cats", 10), ("dogs", 200)):
        (tmp_path / "in" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (colour,) * 3).save(tmp_path / "in" / name / f"{i}.png")
    (tmp_path / "in" / "dogs" / "notes.txt").write_text("x")
    result = ingest(
        IngestOptions(
            "folder", str(tmp_path / "in"), str(tmp_path / "out"), split_ratios={"all": 1.0}
        )
    )
    assert result.label_map.names == ["cats", "dogs"] and result.images == {"all": 4}
    records = read_records(result.output, "all")
    assert sorted((r.filename, r.class_label, r.class_text) for r in records) == [
        ("cats/0.png", 1, "cats"),
        ("cats/1.png", 1, "cats"),
        ("dogs/0.png", 2, "dogs"),
        ("dogs/1.png", 2, "dogs"),
    ]
    assert result.stats["splits"]["all"]["classes"] == {
        "cats": {"images": 2, "boxes": 0},
        "dogs": {"images": 2, "boxes": 0},
    }
    assert [i.where.endswith("notes.txt") for i in result.issues] == [True]


@pytest.mark.slow
def test_two_workers_write_the_same_splits_as_one(demo, tmp_path):
    data, first = demo
    options = IngestOptions(
        "coco", data.images_dir, str(tmp_path), data.annotations, {"train": 0.75, "eval": 0.25}
    )
    result = ingest(options, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    for split in first.splits:
        a = sorted(encode_example(r) for r in read_records(first.output, split))
        b = sorted(encode_example(r) for r in read_records(result.output, split))
        assert a == b


def test_make_pipeline_never_tries_to_download_prism():
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner.fn_runner import FnApiRunner

    from model_maker.core.data.ingest import make_pipeline

    assert isinstance(make_pipeline([]).runner, FnApiRunner)
    assert isinstance(make_pipeline(["--runner=DirectRunner"]).runner, FnApiRunner)
    two = make_pipeline(["--direct_num_workers=2"])
    assert two._options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    threads = make_pipeline(["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    assert threads._options.view_as(DirectOptions).direct_running_mode == "multi_threading"
    other = make_pipeline(["--runner=PrismRunner"])
    assert type(other.runner).__name__ == "PrismRunner"


def test_class_imbalance_is_logged_and_in_stats(tmp_path, class_folders, caplog):
    class_folders(tmp_path / "in", {"cats": 7, "dogs": 2, "fish": 3})
    options = IngestOptions(
        "folder", str(tmp_path / "in"), str(tmp_path / "out"), split_ratios={"all": 1.0}
    )
    with caplog.at_level("WARNING", logger="qatflow.ingest"):
        result = ingest(options)
    assert result.images == {"all": 12}
    stats = json.loads(open(result.stats_path).read())
    assert stats["imbalance"] == {
        "all": {"max_class": "cats", "max": 7, "min_class": "dogs", "min": 2, "ratio": 3.5}
    }
    assert stats["empty_classes"] == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "split all: class imbalance: cats has 7 images, dogs 2 (3.5x, more than 3x)"
    ]


def test_a_class_the_hash_split_left_out_is_reported(tmp_path, class_folders, caplog):
    class_folders(tmp_path / "in", {"cats": 4, "dogs": 1})
    # the hash puts cats/0, cats/1 in a and cats/2, cats/3, dogs/0 in b: no dog in a
    ratios = {"a": 0.5, "b": 0.5}
    assert [hash_split(f"cats/{i}.png", ratios) for i in range(4)] == list("aabb")
    assert hash_split("dogs/0.png", ratios) == "b"
    options = IngestOptions(
        "folder", str(tmp_path / "in"), str(tmp_path / "out"), split_ratios=ratios
    )
    with caplog.at_level("WARNING", logger="qatflow.ingest"):
        result = ingest(options)
    assert result.images == {"a": 2, "b": 3}
    assert result.stats["empty_classes"] == {"a": ["dogs"]}
    assert result.stats["imbalance"] == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["split a: no images of class(es) dogs"]


def test_tfrecord_with_a_nonfinite_area_is_an_invalid_record(demo, tmp_path):
    """A record whose image/object/area is NaN or inf is skipped as invalid_record,
    naming it; nothing non-finite reaches the ground truth."""
    _, first = demo
    good = read_records(first.output, "train")[0]
    folder = tmp_path / "in"
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "data.tfrecord")) as writer:
        writer.write(encode_example(good))
        for i, area in enumerate((float("nan"), float("inf"))):
            bad = replace(good, source_id=str(901 + i), areas=(area,) * len(good.boxes))
            writer.write(encode_example(bad))
    result = ingest(
        IngestOptions("tfrecord", str(folder), str(tmp_path / "out"), split_ratios={"all": 1.0})
    )
    assert result.images == {"all": 1}
    assert sorted(i.kind for i in result.issues) == ["invalid_record", "invalid_record"]
    assert all("area" in i.detail and "not finite" in i.detail for i in result.issues)
    text = (tmp_path / "out" / "all_annotations.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the ground truth"))


def test_tfrecord_with_a_truncated_jpeg_is_invalid_unless_rewritten(demo, tmp_path):
    # The image reader recovers a cut-off JPEG by re-encoding it; a record written
    # unchanged would keep bytes that TensorFlow's decoder refuses at training time.
    _, first = demo
    good = read_records(first.output, "train")[0]
    cut = replace(good, encoded=good.encoded[: len(good.encoded) * 2 // 3])
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_jpeg(cut.encoded)
    folder = tmp_path / "in"
    folder.mkdir()
    with tf.io.TFRecordWriter(str(folder / "data.tfrecord")) as writer:
        writer.write(encode_example(cut))
    options = IngestOptions(
        "tfrecord", str(folder), str(tmp_path / "out"), split_ratios={"all": 1.0}
    )
    with pytest.raises(DataError, match="no images to write"):
        ingest(options)
    stats = json.loads((tmp_path / "out" / "failed-stats.json").read_text())
    (issue,) = stats["issues"]
    assert issue["kind"] == "invalid_record" and "--rewrite" in issue["detail"]
    rewritten = ingest(replace(options, rewrite_tfrecords=True))
    assert rewritten.images == {"all": 1}
    assert rewritten.stats["issue_counts"] == {"recovered_truncated": 1}
    (record,) = read_records(str(tmp_path / "out"), "all")
    assert tf.io.decode_jpeg(record.encoded).shape[:2] == (good.height, good.width)
