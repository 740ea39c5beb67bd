"""stats.json: class imbalance and classes without images, for classification data."""

import json

from model_maker.core.data.labels import LabelMap
from model_maker.core.data.process import ImageSummary
from model_maker.core.data.summary import IMBALANCE_RATIO, class_balance, write_outputs


def splits(**counts):
    return {
        split: {"classes": {name: {"images": n, "boxes": 0} for name, n in per.items() if n}}
        for split, per in counts.items()
    }


def test_imbalance_above_three_times_only():
    assert IMBALANCE_RATIO == 3.0
    per_split = splits(
        exactly=dict(a=9, b=3),  # 3x: not more than 3x
        above=dict(a=10, b=3, c=5),
        single=dict(a=7),
    )
    imbalance, empty = class_balance(per_split, ["a", "b", "c"])
    assert imbalance == {
        "above": {"max_class": "a", "max": 10, "min_class": "b", "min": 3, "ratio": 3.33}
    }
    assert empty == {"exactly": ["c"], "single": ["b", "c"]}


def test_ties_go_to_the_first_name_and_zero_is_not_the_minimum():
    imbalance, empty = class_balance(
        splits(s=dict(b=8, a=8, d=2, c=2, e=0)), ["e", "d", "c", "b", "a"]
    )
    assert imbalance == {
        "s": {"max_class": "a", "max": 8, "min_class": "c", "min": 2, "ratio": 4.0}
    }
    assert empty == {"s": ["e"]}


def _summary(image_id, split, class_id):
    image = {"id": image_id, "file_name": f"{image_id}.png", "width": 4, "height": 4}
    return ImageSummary(image_id, split, {**image, "class_id": class_id}, class_id=class_id)


def test_write_outputs_keeps_the_keys_and_adds_imbalance(tmp_path):
    label_map = LabelMap.from_names(["cats", "dogs", "fish"])
    summaries = [_summary(i, "train", 1) for i in range(1, 8)]
    summaries += [_summary(8, "train", 2), _summary(9, "train", 2), _summary(10, "eval", 2)]
    stats = write_outputs(
        str(tmp_path), summaries, label_map, ["train", "eval"], info={"format": "folder"}
    )
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert list(stats) == [
        "format",
        "splits",
        "total",
        "issue_counts",
        "issues",
        "imbalance",
        "empty_classes",
    ]
    assert stats["splits"]["train"] == {
        "images": 9,
        "boxes": 0,
        "negatives": 0,
        "classes": {"cats": {"images": 7, "boxes": 0}, "dogs": {"images": 2, "boxes": 0}},
    }
    assert stats["imbalance"] == {
        "train": {"max_class": "cats", "max": 7, "min_class": "dogs", "min": 2, "ratio": 3.5}
    }
    assert stats["empty_classes"] == {"train": ["fish"], "eval": ["cats", "fish"]}


def test_detection_data_has_no_class_balance(tmp_path):
    label_map = LabelMap.from_names(["thing", "other"])
    image = {"id": 1, "file_name": "1.png", "width": 4, "height": 4}
    box = {"image_id": 1, "category_id": 2, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}
    stats = write_outputs(
        str(tmp_path), [ImageSummary(1, "all", image, (box,))], label_map, ["all"]
    )
    assert stats["splits"]["all"]["classes"] == {"thing": {"images": 1, "boxes": 1}}
    assert stats["imbalance"] == {} and stats["empty_classes"] == {}
