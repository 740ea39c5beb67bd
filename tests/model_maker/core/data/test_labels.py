import json

import pytest

from model_maker.core.data.labels import LabelMap
from model_maker.core.errors import DataError


def test_coco_ids_are_renumbered_in_source_order():
    lm = LabelMap.from_source_ids({90: "toothbrush", 1: "person", 3: "car"})
    assert [(c.id, c.name, c.source_id) for c in lm.classes] == [
        (1, "person", 1),
        (2, "car", 3),
        (3, "toothbrush", 90),
    ]


def test_names_are_sorted_and_json_round_trips(tmp_path):
    lm = LabelMap.from_names(["zebra", "cat", "cat", "dog"])
    assert lm.names == ["cat", "dog", "zebra"] and lm.id_of("zebra") == 3
    path = tmp_path / "label_map.json"
    lm.save(str(path))
    assert "1-based" in json.loads(path.read_text())["id_rule"]
    assert LabelMap.load(path) == lm


def test_pbtxt(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text("item {\n  id: 2\n  name: 'dog'\n}\nitem { name: \"cat\" id: 1 }\n")
    assert [(c.id, c.name) for c in LabelMap.load(path).classes] == [(1, "cat"), (2, "dog")]


def test_bad_label_maps(tmp_path):
    bad = tmp_path / "label_map.json"
    bad.write_text('{"classes": [\n {"id": 1,, }]}')
    with pytest.raises(DataError, match=r"label_map.json:2:\d+: invalid JSON"):
        LabelMap.load(bad)
    with pytest.raises(DataError, match="unique"):
        LabelMap.from_source_ids({1: "a", 2: "a"})
