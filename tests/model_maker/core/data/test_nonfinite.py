"""Non-finite numbers in annotations (issue 17): a NaN or infinite box coordinate is a
counted ``box_nonfinite`` issue and the box is dropped; a NaN, infinite, negative or
fractional image size is a one-line error naming the file and the field. No JSON
that ingestion writes ever holds NaN or Infinity."""

import glob
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from model_maker.core.data.coco import read_coco_splits
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.process import ImageSummary, ProcessSettings, process_image
from model_maker.core.data.records import decode_example
from model_maker.core.data.source import ISSUE_KINDS, NOT_STRICT, SourceBox, SourceImage
from model_maker.core.data.summary import write_outputs
from model_maker.core.data.voc import list_voc, parse_voc
from model_maker.core.errors import DataError
from pipeline.cli import main

NAN, INF = float("nan"), float("inf")
LABELS = LabelMap.from_names(["cat", "dog"])
SETTINGS = ProcessSettings({"all": 1.0})


def strict_json(path):
    """``json.loads`` that refuses NaN, Infinity and -Infinity (as RFC 8259 does)."""

    def refuse(token):
        raise ValueError(f"{path}: non-finite JSON constant {token}")

    with open(path, encoding="utf-8") as f:
        return json.loads(f.read(), parse_constant=refuse)


def check_written_json(output):
    """Every JSON file ingestion wrote parses without NaN/Infinity; returns them by name."""
    paths = sorted(glob.glob(os.path.join(output, "*.json")))
    assert {"stats.json", "label_map.json", "all_annotations.json"} <= {
        os.path.basename(p) for p in paths
    }
    return {os.path.basename(p): strict_json(p) for p in paths}


def record_boxes(output):
    files = sorted(glob.glob(os.path.join(output, "Split-all", "data_tfrecord-*.gz")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return {(e.filename, b) for e in (decode_example(r.numpy()) for r in dataset) for b in e.boxes}


def _png(path, size=(60, 40)):
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


def test_box_nonfinite_is_a_strict_issue_kind():
    assert "box_nonfinite" in ISSUE_KINDS and "box_nonfinite" not in NOT_STRICT


@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize("position", range(4))
def test_a_nonfinite_coordinate_drops_the_box_and_is_counted(tmp_path, position, value):
    path = tmp_path / "img.png"
    _png(path, (100, 50))
    coords = [10.0, 5.0, 30.0, 25.0]
    coords[position] = value
    src = SourceImage(
        1,
        "img.png",
        str(path),
        "ann.json: image id 1 (img.png)",
        (SourceBox(*coords, "cat", ref="annotation id 8"), SourceBox(1, 2, 3, 4, "dog")),
    )
    record, summary = process_image(src, LABELS, SETTINGS)
    assert [i.kind for i in summary.issues] == ["box_nonfinite"]
    (issue,) = summary.issues
    assert issue.where == "ann.json: image id 1 (img.png) annotation id 8"
    assert f"{value:g}" in issue.detail
    assert [a["category_id"] for a in summary.annotations] == [2]
    example = decode_example(record)
    assert example.labels == (2,) and all(math.isfinite(v) for v in example.boxes[0])


def _coco_with_nonfinite_boxes(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _png(images / name)
    data = {
        "images": [
            {"id": i, "file_name": n, "width": 60, "height": 40}
            for i, n in enumerate(("a.png", "b.png", "c.png"), start=1)
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [5, 5, 20, 20]},
            {"id": 2, "image_id": 1, "category_id": 4, "bbox": [NAN, 5, 20, 20]},
            {"id": 3, "image_id": 1, "category_id": 4, "bbox": [5, 5, INF, 20]},
            {"id": 4, "image_id": 2, "category_id": 4, "bbox": [5, -INF, 20, 20]},
            {"id": 5, "image_id": 2, "category_id": 4, "bbox": [5, 5, 20, "HUGE"]},
            {"id": 6, "image_id": 2, "category_id": 4, "bbox": [5, 5, 10, 10]},
            {"id": 7, "image_id": 3, "category_id": 4, "bbox": [NAN, NAN, NAN, NAN]},
        ],
        "categories": [{"id": 4, "name": "thing"}],
    }
    # Python's json writes NaN/Infinity/-Infinity and reads them back, and reads 1e400 as inf.
    text = json.dumps(data).replace('"HUGE"', "1e400")
    assert "NaN" in text and "-Infinity" in text and "1e400" in text
    path = tmp_path / "instances.json"
    path.write_text(text)
    return images, path


def test_coco_nonfinite_boxes_are_dropped_counted_and_never_written(tmp_path):
    images, annotations = _coco_with_nonfinite_boxes(tmp_path)
    out = tmp_path / "out"
    options = IngestOptions("coco", str(images), str(out), str(annotations), {"all": 1.0})
    result = ingest(options)
    assert result.stats["issue_counts"] == {"box_nonfinite": 5}
    assert result.images == {"all": 3} and result.boxes == {"all": 2}
    wheres = sorted(i.where for i in result.issues)
    assert wheres == [
        f"{annotations}: image id 1 (a.png) annotation id 2",
        f"{annotations}: image id 1 (a.png) annotation id 3",
        f"{annotations}: image id 2 (b.png) annotation id 4",
        f"{annotations}: image id 2 (b.png) annotation id 5",
        f"{annotations}: image id 3 (c.png) annotation id 7",
    ]
    written = check_written_json(str(out))
    assert [a["bbox"] for a in written["all_annotations.json"]["annotations"]] == [
        [5, 5, 20, 20],
        [5, 5, 10, 10],
    ]
    assert written["stats.json"]["issue_counts"] == {"box_nonfinite": 5}
    assert all(math.isfinite(v) for _, box in record_boxes(str(out)) for v in box)

    strict = IngestOptions(
        "coco", str(images), str(out), str(annotations), {"all": 1.0}, strict=True
    )
    with pytest.raises(DataError) as error:
        ingest(strict)
    message = str(error.value)
    assert message.startswith(f"strict: {annotations}: image id 1 (a.png) annotation id 2: ")
    assert "non-finite" in message and "and 4 more" in message and "\n" not in message


def test_coco_integer_beyond_the_float_range_is_a_nonfinite_box(tmp_path):
    _png(tmp_path / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
        "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10**400, 5]}],
        "categories": [{"id": 1, "name": "x"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))  # float() of that integer raises OverflowError
    index = read_coco_splits(tmp_path, str(path))
    (image,) = index.images
    assert image.boxes[0].xmax == INF
    _, summary = process_image(image, index.label_map, SETTINGS)
    assert [(i.kind, i.where) for i in summary.issues] == [
        ("box_nonfinite", f"{path}: image id 1 (a.png) annotation id 3")
    ]
    assert summary.annotations == ()


VOC_XML = """<annotation>
  <filename>a.png</filename>
  <size><width>60</width><height>40</height><depth>3</depth></size>
  {objects}
</annotation>
"""
VOC_OBJECT = (
    "<object><name>{name}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin>"
    "<xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
)


def _voc(tmp_path, boxes, size="<width>60</width><height>40</height>"):
    (tmp_path / "annotations").mkdir(parents=True)
    (tmp_path / "images").mkdir()
    _png(tmp_path / "images" / "a.png")
    objects = "\n  ".join(VOC_OBJECT.format(*b, name=n) for n, b in boxes)
    xml = VOC_XML.format(objects=objects).replace("<width>60</width><height>40</height>", size)
    (tmp_path / "annotations" / "a.xml").write_text(xml)
    return tmp_path


def test_voc_nonfinite_boxes_are_dropped_counted_and_never_written(tmp_path):
    dataset = _voc(
        tmp_path / "voc",
        [
            ("cat", (1, 2, 30, 20)),
            ("cat", ("nan", 2, 30, 20)),
            ("dog", (1, 2, 30, "inf")),
            ("dog", (1, 2, "-Infinity", 20)),
            ("cat", (1, "NaN", 30, 20)),
        ],
    )
    out = tmp_path / "out"
    result = ingest(IngestOptions("voc", str(dataset), str(out), split_ratios={"all": 1.0}))
    assert result.stats["issue_counts"] == {"box_nonfinite": 4}
    assert result.boxes == {"all": 1}
    xml = dataset / "annotations" / "a.xml"
    assert sorted(i.where for i in result.issues) == [
        f"{xml} (a.png) object {n}" for n in (1, 2, 3, 4)
    ]
    written = check_written_json(str(out))
    assert [a["bbox"] for a in written["all_annotations.json"]["annotations"]] == [[1, 2, 29, 18]]
    assert all(math.isfinite(v) for _, box in record_boxes(str(out)) for v in box)
    with pytest.raises(DataError, match=r"^strict: .*a\.xml \(a\.png\) object 1: .*non-finite"):
        ingest(IngestOptions("voc", str(dataset), str(out), split_ratios={"all": 1.0}, strict=True))


def test_written_json_refuses_a_nonfinite_number(tmp_path):
    # A last guard: whatever slips past the readers fails in one line naming the file
    # instead of writing invalid JSON.
    image = {"id": 1, "file_name": "a.png", "width": 60, "height": 40}
    ann = {"image_id": 1, "category_id": 1, "bbox": [NAN, 0, 5, 5], "area": NAN, "iscrowd": 0}
    bad = ImageSummary(1, "all", image, (ann,))
    with pytest.raises(DataError, match=r"all_annotations\.json: .*not finite"):
        write_outputs(str(tmp_path), [bad], LABELS, ["all"])
    assert not (tmp_path / "all_annotations.json").exists()


BAD_SIZES = [
    ("NaN", "nan"),
    ("Infinity", "inf"),
    ("1e400", "inf"),
    ("-Infinity", "-inf"),
    ("-3", "-3"),
    ("64.5", "64.5"),
]


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("text, shown", BAD_SIZES)
def test_coco_bad_image_size_is_one_line_naming_file_and_field(tmp_path, field, text, shown):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    data["images"][0][field] = "BAD"
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data).replace('"BAD"', text))
    with pytest.raises(DataError) as error:
        read_coco_splits(tmp_path, str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: images[0] (id 1): {field} must be ")
    assert message.endswith(f"got {shown}") and "\n" not in message


def test_coco_whole_float_sizes_still_read(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 60.0, "height": 40}],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    (image,) = read_coco_splits(tmp_path, str(path)).images
    assert (image.width, image.height) == (60, 40) and isinstance(image.width, int)


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-Infinity", "1e400", "-3", "64.5"])
def test_voc_bad_image_size_is_one_line_naming_file_and_field(tmp_path, field, text):
    size = {"width": "60", "height": "40"}
    size[field] = text
    dataset = _voc(
        tmp_path,
        [("cat", (1, 2, 30, 20))],
        f"<width>{size['width']}</width><height>{size['height']}</height>",
    )
    (item,) = list_voc(dataset)
    with pytest.raises(DataError) as error:
        parse_voc(item)
    message = str(error.value)
    assert message.startswith(f"{item.xml_path}: <size>: <{field}> must be ")
    assert message.endswith(f"got {text!r}") and "\n" not in message


def test_voc_whole_float_sizes_still_read(tmp_path):
    dataset = _voc(tmp_path, [("cat", (1, 2, 30, 20))], "<width>60.0</width><height> 40 </height>")
    (item,) = list_voc(dataset)
    image = parse_voc(item)
    assert (image.width, image.height) == (60, 40) and isinstance(image.width, int)


def _one_line_exit_1(capsys, argv, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


def test_cli_coco_nan_width_exits_1_with_one_line(tmp_path, capsys):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": NAN, "height": 40}],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    argv = ["-q", "ingest", "--format", "coco", "--input", str(tmp_path)]
    argv += ["--annotations", str(path)]
    argv += ["--output", str(tmp_path / "out"), "--workers", "1"]
    _one_line_exit_1(capsys, argv, f"{path}: images[0] (id 1): width", "got nan")


def test_cli_voc_infinite_height_exits_1_with_one_line(tmp_path, capsys):
    dataset = _voc(
        tmp_path / "voc",
        [("cat", (1, 2, 30, 20))],
        "<width>60</width><height>1e400</height>",
    )
    argv = ["-q", "ingest", "--format", "voc", "--input", str(dataset)]
    argv += ["--output", str(tmp_path / "out"), "--workers", "1", "--split", "all=1.0"]
    xml = dataset / "annotations" / "a.xml"
    _one_line_exit_1(capsys, argv, f"{xml}: <size>: <height> must be ", "got '1e400'")


def test_cli_coco_nan_box_is_counted_and_strict_exits_1(tmp_path, capsys):
    images, annotations = _coco_with_nonfinite_boxes(tmp_path)
    out = tmp_path / "out"
    argv = ["-q", "ingest", "--format", "coco", "--input", str(images)]
    argv += ["--annotations", str(annotations), "--output", str(out), "--workers", "1"]
    argv += ["--split", "all=1.0"]
    assert main(argv) == 0
    assert "box_nonfinite 5" in capsys.readouterr().out
    check_written_json(str(out))
    _one_line_exit_1(capsys, [*argv, "--strict"], "annotation id 2", "non-finite")
