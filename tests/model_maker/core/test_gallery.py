"""Stored detections, their difference, the gallery order, thumbnails and drawn boxes."""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from model_maker.core import gallery
from model_maker.core.gallery import (
    box_difference,
    compact_detections,
    detections_document,
    make_thumbnail,
    misclassified_order,
    predictions_document,
    strict_json,
    top_predictions,
    write_thumbnails,
)


def _strict(text: str):
    """json.loads that fails on NaN/Infinity."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}"))


def _png(width: int, height: int, colour=(40, 90, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- stored boxes ---------------------------------------------------------------------------


def test_compact_detections_rounds_floors_sorts_and_limits():
    dets = [
        {"image_id": 7, "category_id": 2, "bbox": [1.26, 2.04, 10.55, 3.0], "score": 0.61234},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.93},
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.0499},  # below floor
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.05},  # at the floor
        {"image_id": 7, "category_id": 1, "bbox": [0, math.nan, 5, 5], "score": 0.9},  # not finite
        {"image_id": 8, "category_id": 1, "bbox": [0, 0, 5, 5], "score": math.nan},
    ]
    assert compact_detections(dets) == {
        "7": [[0, 0, 5, 5, 0.93, 1], [1.3, 2.0, 10.6, 3.0, 0.612, 2], [0, 0, 5, 5, 0.05, 1]]
    }
    many = [
        {"image_id": 1, "category_id": 1, "bbox": [i, 0, 1, 1], "score": 0.1 + i / 1000}
        for i in range(150)
    ]
    kept = compact_detections(many)["1"]
    assert len(kept) == gallery.MAX_BOXES == 100
    assert [b[0] for b in kept] == list(range(149, 49, -1))  # the 100 highest scores, in order


# --- difference -------------------------------------------------------------------------------

BASE = [[0, 0, 10, 10, 0.9, 1], [20, 0, 10, 10, 0.8, 2], [40, 0, 10, 10, 0.7, 1]]


def test_difference_is_zero_for_identical_and_one_for_disjoint_boxes():
    assert box_difference(BASE, BASE) == 0.0
    assert box_difference([], []) == 0.0
    assert box_difference(BASE, []) == 1.0
    assert box_difference([], BASE) == 1.0
    far = [[x + 100, y, w, h, s, c] for x, y, w, h, s, c in BASE]
    assert box_difference(far, BASE) == 1.0
    wrong_class = [[x, y, w, h, s, 3 - c] for x, y, w, h, s, c in BASE]
    assert box_difference(wrong_class, BASE) == 1.0


def test_difference_of_a_constructed_case():
    boxes = [
        [2, 0, 10, 10, 0.95, 1],  # IoU 80/120 = 0.67 with base box 1: a match
        [25, 0, 10, 10, 0.85, 2],  # IoU 50/150 = 0.33 with base box 2: no match
        [40, 0, 10, 10, 0.29, 1],  # below the 0.3 threshold: not counted
        [60, 0, 10, 10, 0.5, 1],  # nowhere in the baseline
    ]
    # counted: 3 here, 3 in the baseline, 1 matched -> 1 - 1/3
    assert box_difference(boxes, BASE) == pytest.approx(2 / 3)
    # one baseline box matches one box only (one to one), the higher score takes it
    twice = [[0, 0, 10, 10, 0.9, 1], [0, 1, 10, 10, 0.8, 1]]
    assert box_difference(twice, BASE[:1]) == pytest.approx(0.5)
    assert box_difference(BASE, BASE, threshold=0.75) == 0.0


# --- detections.json ----------------------------------------------------------------------


def _ground_truth():
    return {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 50} for i in (3, 1, 2, 4)
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"image_id": 1, "category_id": 2, "bbox": [1.04, 2, 3, 4]}],
    }


def test_detections_document_orders_by_the_int8_difference_then_id():
    same = {"1": BASE, "2": BASE, "3": BASE, "4": BASE}
    boxes = {
        "keras_float": same,
        "float32": {"1": [], "2": BASE, "3": BASE, "4": BASE},  # not int8: does not order
        "ptq_int8": {"1": BASE, "2": BASE[:2], "3": BASE, "4": BASE[:1]},
        "qat_int8": {"1": BASE, "2": BASE, "3": [], "4": BASE},
    }
    doc = detections_document(_ground_truth(), {2: "b", 1: "a"}, boxes, "keras_float")
    doc = _strict(strict_json(doc))
    assert [i["id"] for i in doc["images"]] == [3, 4, 2, 1]  # 1.0, 2/3, 1/3, 0 (ptq/qat)
    first = doc["images"][0]
    assert set(first) == {"id", "file_name", "width", "height", "thumbnail", "ground_truth",
                          "difference"}  # fmt: skip
    assert first["difference"] == {"float32": 0.0, "ptq_int8": 0.0, "qat_int8": 1.0}
    assert doc["images"][2]["difference"]["ptq_int8"] == 0.3333
    assert doc["images"][3]["difference"]["float32"] == 1.0  # listed, but not ordering
    assert doc["images"][3]["ground_truth"] == [[1.0, 2, 3, 4, 2]]
    assert first["thumbnail"] is None
    assert doc["categories"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert (doc["version"], doc["score_floor"], doc["diff_threshold"]) == (1, 0.05, 0.3)
    assert doc["baseline"] == "keras_float"
    assert list(doc["detections"]) == list(boxes)
    assert doc["detections"]["ptq_int8"]["4"] == BASE[:1]
    assert set(doc["detections"]["float32"]) == {"1", "2", "3", "4"}


def test_without_a_baseline_every_difference_is_zero_and_images_are_in_id_order():
    boxes = {"ptq_int8": {"1": BASE}, "qat_int8": {"2": BASE}}
    doc = detections_document(_ground_truth(), {1: "a"}, boxes, "")
    assert [i["id"] for i in doc["images"]] == [1, 2, 3, 4]
    assert all(i["difference"] == {"ptq_int8": 0.0, "qat_int8": 0.0} for i in doc["images"])
    assert doc["detections"]["qat_int8"]["1"] == []  # every image listed, even without boxes


def test_strict_json_refuses_nan_and_is_compact():
    assert strict_json({"a": [1, None]}) == '{"a":[1,null]}'
    with pytest.raises(ValueError):
        strict_json({"a": math.nan})


# --- thumbnails --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (_jpeg(1200, 800), (512, 341)),  # JPEG decoded in draft mode, then shrunk
        (_png(300, 900), (171, 512)),
        (_png(100, 50), (100, 50)),  # never upscaled
        (_png(512, 512), (512, 512)),
    ],
)
def test_thumbnails_fit_512_and_are_never_upscaled(encoded, expected):
    thumb, width = make_thumbnail(encoded)
    assert thumb.size == expected and thumb.mode == "RGB"
    assert width == Image.open(io.BytesIO(encoded)).width


def test_write_thumbnails_reads_only_until_the_wanted_images_were_seen(tmp_path, caplog):
    def images():
        yield 1, _png(600, 300)
        yield 2, b"not an image"
        yield 3, _png(40, 20)
        raise AssertionError("read past the last wanted image")

    written, kept = write_thumbnails(images(), {1, 2, 3}, str(tmp_path), keep={1})
    assert written == {1: "gallery/1.jpg", 3: "gallery/3.jpg"}
    assert "no thumbnail of image 2" in caplog.text
    with Image.open(tmp_path / "gallery" / "1.jpg") as saved:
        assert (saved.format, saved.mode, saved.size) == ("JPEG", "RGB", (512, 256))
    assert Image.open(tmp_path / "gallery" / "3.jpg").size == (40, 20)
    assert set(kept) == {1}
    assert kept[1].image.size == (160, 80) and kept[1].scale == pytest.approx(160 / 600)
    assert gallery.thumbnail_name("../a b") == ".._a_b.jpg"


def test_drawn_boxes_change_the_edge_pixels_only():
    source = Image.new("RGB", (200, 100), (0, 0, 0))
    drawn = gallery.draw_boxes(source, [[100, 40, 200, 100, 0.9, 1]], scale=0.5)
    pixels, before = np.asarray(drawn), np.asarray(source)
    # box x 50..149, y 20..69 in the half-scale image; outline 2 px wide
    assert tuple(pixels[45, 50]) == gallery.box_colour(1)  # left edge
    assert tuple(pixels[20, 100]) == gallery.box_colour(1)  # top edge
    assert tuple(pixels[45, 100]) == (0, 0, 0)  # inside: untouched
    assert np.array_equal(before, np.zeros_like(before))  # the source is not modified
    uri = gallery.data_uri(drawn)
    assert uri.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.format == "JPEG" and decoded.size == (200, 100)


# --- classification -------------------------------------------------------------------------


def test_top_predictions_and_the_misclassified_order():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert top_predictions(probabilities) == [[1, 0.7], [0, 0.5], [2, 0.5]]  # tie: lowest
    # ranked by the logits the metrics used: a tie of saturated probabilities is no tie there
    logits = np.array([[0.0, 2.0, 1.0], [40.0, 41.0, 0.0], [0.0, 1.0, 2.0]])
    assert top_predictions(probabilities, ranked_by=logits)[1] == [1, 0.5]
    labels = [1, 1, 0, 2]
    predictions = {
        "float32": [[1, 0.9], [0, 0.6], [0, 0.8], [2, 0.9]],  # wrong on 1
        "ptq_int8": [[1, 0.9], [0, 0.6], [1, 0.5], [2, 0.9]],  # wrong on 1, 2
        "qat_int8": [[1, 0.9], [1, 0.6], [1, 0.5], [2, 0.9]],  # wrong on 2
    }
    assert misclassified_order(labels, predictions) == [1, 2]  # both twice: by index
    predictions["float32"][2] = [2, 0.4]
    assert misclassified_order(labels, predictions) == [2, 1]  # 3 wrong before 2


def test_predictions_document_needs_one_prediction_per_image():
    images = [{"index": 0, "file_name": "a.jpg", "label": 1, "thumbnail": None}]
    doc = predictions_document(["x", "y"], "float32", images, {"float32": [[1, 0.75]]})
    assert _strict(strict_json(doc)) == {
        "version": 1,
        "classes": ["x", "y"],
        "baseline": "float32",
        "images": images,
        "predictions": {"float32": [[1, 0.75]]},
    }
    with pytest.raises(ValueError, match="ptq_int8: 2 predictions for 1 images"):
        predictions_document(["x", "y"], "", images, {"ptq_int8": [[1, 0.7], [0, 0.6]]})
