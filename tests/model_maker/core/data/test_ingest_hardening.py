"""Hostile and degenerate datasets (issue 17): file names that leave the dataset or are not
UTF-8, one file under several image ids, datasets with nothing to train on, a failed run's
output, COCO ``iscrowd``/``area`` that are not finite. Each case is counted or refused with
one line, never a crash and never silent."""

import glob
import json
import os

import numpy as np
import pytest
from PIL import Image

from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.errors import DataError
from pipeline.cli import main

ALL = {"all": 1.0}


def _jpeg(path, size=(60, 40), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)


def _coco(tmp_path, names, boxes_per_image=1, extra_annotations=()):
    """``images/`` with ``ok.jpg`` (and whatever the test adds) and a COCO JSON naming
    ``names`` (ids 1..N), one 20x20 box each unless ``boxes_per_image`` is 0."""
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    _jpeg(images / "ok.jpg")
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i, name in enumerate(names, start=1):
        data["images"].append({"id": i, "file_name": name, "width": 60, "height": 40})
        for j in range(boxes_per_image):
            data["annotations"].append(
                {"id": 10 * i + j, "image_id": i, "category_id": 1, "bbox": [5, 5, 20, 20]}
            )
    data["annotations"] += list(extra_annotations)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data, ensure_ascii=True))
    return images, path


def _options(images, annotations, out, **kwargs):
    return IngestOptions("coco", str(images), str(out), str(annotations), ALL, **kwargs)


def _kinds(result):
    return result.stats["issue_counts"]


# --- file names that leave the dataset ---------------------------------------------------


@pytest.fixture
def outside(tmp_path):
    """A secret image beside the dataset, reached by an absolute name, by '..' and by a
    symlink inside the image folder."""
    secret = tmp_path / "secret.jpg"
    _jpeg(secret, seed=1)
    root = tmp_path / "dataset"
    root.mkdir()
    (root / "images").mkdir()
    os.symlink(secret, root / "images" / "link.jpg")
    names = ["ok.jpg", str(secret), "../../secret.jpg", "link.jpg"]
    return _coco(root, names)


def test_names_leaving_the_dataset_are_refused_and_counted(outside, tmp_path):
    images, annotations = outside
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.images == {"all": 1}
    assert _kinds(result) == {"outside_input": 3}
    wheres = " ".join(i.where + i.detail for i in result.issues)
    for name in ("secret.jpg", "../../secret.jpg", "link.jpg"):
        assert name in wheres
    assert all("--allow-outside-input" not in i.detail for i in result.issues)  # kind says it


def test_allow_outside_input_reads_them(outside, tmp_path):
    images, annotations = outside
    result = ingest(_options(images, annotations, tmp_path / "out", allow_outside_input=True))
    assert result.images == {"all": 4} and _kinds(result) == {}


def test_cli_allow_outside_input_flag(outside, tmp_path, capsys):
    images, annotations = outside
    base = ["ingest", "--format", "coco", "--input", str(images), "--annotations"]
    base += [str(annotations), "--split", "all=1"]
    assert main([*base, "--output", str(tmp_path / "a"), "--strict"]) == 1
    assert "outside the dataset" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "b"), "--allow-outside-input"]) == 0
    stats = json.loads((tmp_path / "b" / "stats.json").read_text())
    assert stats["total"]["images"] == 4


def test_voc_filename_climbing_out_is_refused(tmp_path):
    root = tmp_path / "voc"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    _jpeg(root / "images" / "a.jpg")
    _jpeg(tmp_path / "b.jpg")
    box = "<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
    box += "<ymax>9</ymax></bndbox></object>"
    for stem, name in (("a", "a.jpg"), ("b", "../../b.jpg")):
        xml = f"<annotation><filename>{name}</filename>{box}</annotation>"
        (root / "annotations" / f"{stem}.xml").write_text(xml)
    result = ingest(IngestOptions("voc", str(root), str(tmp_path / "out"), split_ratios=ALL))
    assert result.images == {"all": 1} and _kinds(result) == {"outside_input": 1}
    assert "../../b.jpg" in result.issues[0].where + result.issues[0].detail


# --- file names that are not UTF-8 -------------------------------------------------------

LATIN1 = os.fsdecode(b"caf\xe9.jpg")  # a surrogate-escaped name, as os.listdir returns it


def test_coco_non_utf8_file_name_is_kept_escaped_and_counted(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg", LATIN1])
    _jpeg(images / LATIN1, seed=2)
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.images == {"all": 2} and _kinds(result) == {"invalid_file_name": 1}
    assert "caf\\xe9.jpg" in result.issues[0].where
    gt = json.loads((tmp_path / "out" / "all_annotations.json").read_text())
    assert sorted(i["file_name"] for i in gt["images"]) == ["caf\\xe9.jpg", "ok.jpg"]


def test_folder_non_utf8_file_name_is_kept_escaped_and_counted(tmp_path, class_folders):
    root = class_folders(tmp_path / "classes", {"ants": 2, "bees": 2})
    _jpeg(root / "bees" / LATIN1, seed=3)
    result = ingest(IngestOptions("folder", str(root), str(tmp_path / "out"), split_ratios=ALL))
    assert result.images == {"all": 5} and _kinds(result) == {"invalid_file_name": 1}


def test_folder_non_utf8_class_folder_is_one_line(tmp_path, class_folders, capsys):
    root = class_folders(tmp_path / "classes", {"ants": 2, LATIN1[:-4]: 2})
    argv = ["ingest", "--format", "folder", "--input", str(root), "--split", "all=1"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "caf\\xe9" in err and "UTF-8" in err


# --- one file under several ids ----------------------------------------------------------


def test_same_file_under_two_ids_is_counted(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg", "ok.jpg", "ok.jpg"])
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.images == {"all": 3} and _kinds(result) == {"duplicate_file_name": 2}
    details = sorted(i.detail for i in result.issues)
    assert details == ["image id 2, also image id 1", "image id 3, also image id 1"]
    with pytest.raises(DataError, match="several image ids"):
        ingest(_options(images, annotations, tmp_path / "strict", strict=True))


# --- nothing to train on -----------------------------------------------------------------


def test_empty_coco_is_an_error_saying_what_was_found(tmp_path):
    images, annotations = _coco(tmp_path, [])
    with pytest.raises(DataError) as error:
        ingest(_options(images, annotations, tmp_path / "out"))
    assert "no images" in str(error.value) and "0 images listed" in str(error.value)


def test_all_images_skipped_is_an_error_naming_the_kinds(tmp_path):
    images, annotations = _coco(tmp_path, ["gone.jpg", "gone2.jpg"])
    with pytest.raises(DataError) as error:
        ingest(_options(images, annotations, tmp_path / "out"))
    assert "2 images listed" in str(error.value) and "2 x missing_image" in str(error.value)


def test_detection_data_without_a_single_box_is_an_error(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg"], boxes_per_image=0)
    with pytest.raises(DataError) as error:
        ingest(_options(images, annotations, tmp_path / "out"))
    assert "no image has a box" in str(error.value) and "1 image written" in str(error.value)


def test_boxes_all_dropped_is_an_error_naming_the_kinds(tmp_path):
    bad = [{"id": 99, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 3]}]
    images, annotations = _coco(tmp_path, ["ok.jpg"], boxes_per_image=0, extra_annotations=bad)
    with pytest.raises(DataError) as error:
        ingest(_options(images, annotations, tmp_path / "out"))
    assert "no image has a box" in str(error.value) and "1 x box_dropped" in str(error.value)


# --- a failed run leaves no output that looks complete -----------------------------------


def _listing(folder):
    return sorted(
        os.path.relpath(p, folder) for p in glob.glob(os.path.join(folder, "**"), recursive=True)
    )


def test_strict_failure_writes_no_records_and_keeps_the_stats_aside(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg", "gone.jpg"])
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        ingest(_options(images, annotations, out, strict=True))
    assert _listing(out) == [".", "failed-stats.json"]
    assert str(out / "failed-stats.json") in str(error.value)
    stats = json.loads((out / "failed-stats.json").read_text())
    assert stats["issue_counts"] == {"missing_image": 1}


def test_a_failed_run_leaves_an_earlier_output_as_it_was(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg", "gone.jpg"])
    out = tmp_path / "out"
    ingest(_options(images, annotations, out))
    before = {p: (out / p).read_bytes() for p in _listing(out) if (out / p).is_file()}
    with pytest.raises(DataError):
        ingest(_options(images, annotations, out, strict=True))
    after = {p: (out / p).read_bytes() for p in _listing(out) if (out / p).is_file()}
    assert after.pop("failed-stats.json")
    assert after == before
    ingest(_options(images, annotations, out))  # success clears the failed run's stats
    assert not (out / "failed-stats.json").exists()


def test_a_crash_inside_beam_leaves_no_beam_temp_folders(tmp_path, monkeypatch):
    images, annotations = _coco(tmp_path, ["ok.jpg"])
    out = tmp_path / "out"

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("model_maker.core.data.ingest.process_image", explode)
    with pytest.raises(Exception, match="disk on fire"):
        ingest(_options(images, annotations, out))
    assert not glob.glob(str(out / "**" / "beam-temp-*"), recursive=True)
    assert not glob.glob(str(out / "**" / "data_tfrecord-*"), recursive=True)


# --- COCO iscrowd and area ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["iscrowd", "area"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400"])
def test_coco_nonfinite_iscrowd_or_area_drops_the_box_counted(tmp_path, field, value):
    text = '{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 9, 9], "%s": %s}'
    images, annotations = _coco(tmp_path, ["ok.jpg"])
    data = annotations.read_text().replace(
        '"annotations": [', '"annotations": [' + text % (field, value) + ", "
    )
    annotations.write_text(data)
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.boxes == {"all": 1} and _kinds(result) == {"box_nonfinite": 1}
    assert field in result.issues[0].detail and "annotation id 7" in result.issues[0].where


def test_coco_iscrowd_other_than_0_or_1_is_one_line(tmp_path):
    odd = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 9, 9], "iscrowd": 2}]
    images, annotations = _coco(tmp_path, ["ok.jpg"], extra_annotations=odd)
    with pytest.raises(DataError, match=r"annotations\[1\] \(id 7\): iscrowd must be 0 or 1"):
        ingest(_options(images, annotations, tmp_path / "out"))


# --- found by the fuzz test (tests/pipeline/commands/test_ingest_fuzz.py) ----------------


@pytest.mark.parametrize(
    ("text", "says"), [("9" * 5001, "digits"), ("[" * 50_000, "nested too deeply")]
)
def test_coco_json_python_cannot_read_is_one_line(tmp_path, text, says):
    images, annotations = _coco(tmp_path, ["ok.jpg"])
    annotations.write_text(
        annotations.read_text().replace("[5, 5, 20, 20]", f"[{text}, 5, 20, 20]", 1)
    )
    with pytest.raises(DataError, match=says) as error:
        ingest(_options(images, annotations, tmp_path / "out"))
    assert str(annotations) in str(error.value)


@pytest.mark.parametrize("value", [[], {}])
def test_coco_unhashable_ids_are_unknown_ids(tmp_path, value):
    odd = [{"id": 7, "image_id": value, "category_id": 1, "bbox": [5, 5, 9, 9]}]
    images, annotations = _coco(tmp_path, ["ok.jpg"], extra_annotations=odd)
    with pytest.raises(DataError, match="unknown image_id"):
        ingest(_options(images, annotations, tmp_path / "out"))


def test_a_nul_in_a_file_name_is_a_missing_image(tmp_path):
    images, annotations = _coco(tmp_path, ["ok.jpg", "ok.jpg\0"])
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.images == {"all": 1} and _kinds(result) == {"missing_image": 1}


def test_a_box_narrower_than_float32_resolves_is_dropped_and_counted(tmp_path):
    thin = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5, 5, 1e-9, 9]}]
    images, annotations = _coco(tmp_path, ["ok.jpg"], extra_annotations=thin)
    result = ingest(_options(images, annotations, tmp_path / "out"))
    assert result.boxes == {"all": 1} and _kinds(result) == {"box_dropped": 1}
    assert "float32" in result.issues[0].detail
