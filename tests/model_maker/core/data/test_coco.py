import json

import pytest

from model_maker.core.data.coco import read_coco_splits
from model_maker.core.errors import DataError


def _write(path, data):
    path.write_text(json.dumps(data, indent=1))
    return str(path)


def _dataset(**changes):
    data = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 11, "file_name": "b.jpg", "width": 100, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    data.update(changes)
    return data


def test_reads_images_boxes_and_order_preserving_ids(tmp_path):
    index = read_coco_splits(tmp_path, _write(tmp_path / "a.json", _dataset()))
    assert [(c.id, c.name, c.source_id) for c in index.label_map.classes] == [
        (1, "cat", 3),
        (2, "dog", 7),
    ]
    first, second = index.images
    assert first.image_id == 10 and first.path == str(tmp_path / "a.jpg")
    assert [(b.xmin, b.ymin, b.xmax, b.ymax, b.label, b.is_crowd) for b in first.boxes] == [
        (10, 5, 30, 15, "dog", False),
        (0, 0, 5, 5, "cat", True),
    ]
    assert second.boxes == ()  # a negative image is kept


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,\n  "file_name": "a.jpg",,}\n]}')
    with pytest.raises(DataError, match=r"bad.json:3:\d+: invalid JSON"):
        read_coco_splits(tmp_path, str(path))


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"annotations": [{"id": 5, "image_id": 10, "category_id": 99, "bbox": [0, 0, 1, 1]}]},
            r"annotations\[0\] \(id 5\): unknown category_id 99",
        ),
        (
            {"annotations": [{"id": 5, "image_id": 12, "category_id": 7, "bbox": [0, 0, 1, 1]}]},
            r"annotations\[0\] \(id 5\): unknown image_id 12",
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
                "annotations": [],
            },
            r"images\[1\] \(id 1\): duplicate image id 1",
        ),
        (
            {"annotations": [{"id": 5, "image_id": 10, "category_id": 7, "bbox": [0, 0, 1]}]},
            r"annotations\[0\] \(id 5\): bbox must be",
        ),
        ({"images": [{"file_name": "a.jpg"}]}, r"images\[0\]: missing key\(s\) id"),
        ({"categories": {"a": 1}}, "'categories' must be a list"),
        (
            {"images": [{"id": 3, "file_name": "a.jpg", "width": "wide"}], "annotations": []},
            r"images\[0\] \(id 3\): width must be a non-negative number, got 'wide'",
        ),
    ],
)
def test_bad_records_are_named(tmp_path, changes, message):
    path = _write(tmp_path / "a.json", _dataset(**changes))
    with pytest.raises(DataError, match=message):
        read_coco_splits(tmp_path, path)


def test_split_files(tmp_path):
    data = _dataset()
    train = _write(tmp_path / "train.json", {**data, "images": data["images"][:1]})
    val = _write(tmp_path / "val.json", {**data, "images": data["images"][1:], "annotations": []})
    index = read_coco_splits(tmp_path, split_files={"train": train, "val": val})
    assert [(i.image_id, i.split) for i in index.images] == [(10, "train"), (11, "val")]
    with pytest.raises(DataError, match="image id 10 is also in"):
        read_coco_splits(tmp_path, split_files={"train": train, "val": train})
    other = _write(tmp_path / "other.json", {**data, "categories": [{"id": 1, "name": "x"}]})
    with pytest.raises(DataError, match="categories differ"):
        read_coco_splits(tmp_path, split_files={"train": train, "val": other})


def test_split_files_with_an_image_folder_per_split(tmp_path):
    """COCO 2017 layout: train2017/ and val2017/ beside one JSON per split."""
    data = _dataset()
    train = _write(tmp_path / "train.json", {**data, "images": data["images"][:1]})
    val = _write(tmp_path / "val.json", {**data, "images": data["images"][1:], "annotations": []})
    index = read_coco_splits(
        tmp_path / "unused",
        split_files={"train": train, "val": val},
        image_dirs={"train": str(tmp_path / "train2017"), "val": str(tmp_path / "val2017")},
    )
    assert [i.path for i in index.images] == [
        str(tmp_path / "train2017" / "a.jpg"),
        str(tmp_path / "val2017" / "b.jpg"),
    ]
    # a split without its own folder reads from the input folder
    index = read_coco_splits(
        tmp_path, split_files={"train": train, "val": val}, image_dirs={"val": "v"}
    )
    assert [i.path for i in index.images] == [str(tmp_path / "a.jpg"), "v/b.jpg"]
