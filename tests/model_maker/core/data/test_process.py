import numpy as np
import pytest
from PIL import Image

from model_maker.core.data.labels import LabelMap
from model_maker.core.data.process import ProcessSettings, process_image
from model_maker.core.data.records import decode_example
from model_maker.core.data.source import SourceBox, SourceImage

LABELS = LabelMap.from_names(["cat", "dog"])
SETTINGS = ProcessSettings({"train": 1.0})


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(path)
    return str(path)


def _src(path, *boxes, **kwargs):
    return SourceImage(1, "img.png", path, "ann.json: image id 1", tuple(boxes), **kwargs)


def test_boxes_are_normalised_yxyx(image_file):
    record, summary = process_image(
        _src(image_file, SourceBox(10, 5, 30, 25, "dog")), LABELS, SETTINGS
    )
    example = decode_example(record)
    assert example.labels == (2,) and example.texts == ("dog",)
    np.testing.assert_allclose(example.boxes, [(0.1, 0.1, 0.5, 0.3)], atol=1e-7)
    assert summary.annotations[0]["bbox"] == [10, 5, 20, 20] and summary.issues == ()
    assert summary.split == "train" and summary.image["width"] == 100


def test_outside_boxes_are_clipped_and_empty_ones_dropped(image_file):
    src = _src(
        image_file,
        SourceBox(-5, 10, 120, 60, "cat", ref="annotation id 1"),
        SourceBox(20, 20, 20, 30, "cat", ref="annotation id 2"),
        SourceBox(30, 20, 10, 30, "cat", ref="annotation id 3"),
        SourceBox(200, 10, 220, 30, "cat", ref="annotation id 4"),
    )
    record, summary = process_image(src, LABELS, SETTINGS)
    kinds = [(i.kind, i.where.rsplit(" ", 1)[1]) for i in summary.issues]
    assert kinds == [
        ("box_clipped", "1"),
        ("box_dropped", "2"),
        ("box_dropped", "3"),
        ("box_dropped", "4"),
    ]
    assert "annotation id 1" in summary.issues[0].where
    np.testing.assert_allclose(decode_example(record).boxes, [(0.2, 0.0, 1.0, 1.0)], atol=1e-7)


def test_negatives_kept_or_dropped(image_file):
    record, summary = process_image(_src(image_file), LABELS, SETTINGS)
    assert record is not None and decode_example(record).boxes == () and summary.issues == ()
    record, summary = process_image(
        _src(image_file), LABELS, ProcessSettings({"train": 1.0}, False)
    )
    assert record is None and [i.kind for i in summary.issues] == ["negative_dropped"]


def test_missing_image_is_skipped_and_reported(tmp_path):
    record, summary = process_image(_src(str(tmp_path / "gone.png")), LABELS, SETTINGS)
    assert record is None and summary.image is None
    assert summary.issues[0].kind == "missing_image" and "gone.png" in summary.issues[0].detail


def test_size_mismatch_reported(image_file):
    _, summary = process_image(_src(image_file, width=64, height=64), LABELS, SETTINGS)
    assert [i.kind for i in summary.issues] == ["size_mismatch"]


def test_class_folder_record(image_file):
    record, summary = process_image(_src(image_file, class_label="dog"), LABELS, SETTINGS)
    example = decode_example(record)
    assert (example.class_label, example.class_text, example.boxes) == (2, "dog", ())
    assert summary.class_id == 2
