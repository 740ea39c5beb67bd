import json

import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import DataError
from model_maker.core.tflite_manifest import (
    LABELS_FILE,
    MANIFEST_FILE,
    labels_text,
    manifest_nms,
    read_manifest,
    variant_entry,
    write_tflite_set_files,
)


def test_writer_and_reader_agree(tmp_path):
    entries = [
        {"variant": "float32", "file": "float32.tflite", "postprocess": {"max_detections": 7}},
        {"variant": "ptq_int8", "file": "ptq_int8.tflite"},
    ]
    manifest = write_tflite_set_files(
        str(tmp_path), entries, label_map={1: "cat"}, num_classes=2, metadata="note"
    )
    assert (tmp_path / LABELS_FILE).read_text() == "cat\nclass_2\n"
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == manifest
    assert [e["variant"] for e in read_manifest(str(tmp_path))] == ["float32", "ptq_int8"]
    assert variant_entry(str(tmp_path), "ptq_int8")["file"] == "ptq_int8.tflite"
    assert manifest_nms(entries[0]) == NMSOptions(max_detections=7)
    assert manifest_nms(entries[1]) == NMSOptions()
    with pytest.raises(DataError, match=r"'qat_int8' is not in .* \(it has float32, ptq_int8\)"):
        variant_entry(str(tmp_path), "qat_int8")


def test_broken_manifests_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        read_manifest(str(tmp_path))
    (tmp_path / MANIFEST_FILE).write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        read_manifest(str(tmp_path))
    (tmp_path / MANIFEST_FILE).write_text('{"variants": [{"variant": "x"}]}')
    with pytest.raises(DataError, match="needs 'variant' and 'file'"):
        read_manifest(str(tmp_path))
    with pytest.raises(DataError, match=r"'x': postprocess\.iou_threshold"):
        manifest_nms({"variant": "x", "postprocess": {"iou_threshold": 2.0}})


def test_labels_text_one_line_per_class():
    assert labels_text({2: "dog"}, 3) == "class_1\ndog\nclass_3\n"
