import json

from model_maker.core.metrics_document import (
    METRICS_FILE,
    candidate_metric,
    metrics_document,
    read_metrics,
    variant_metrics,
)


def test_document_round_trip_and_lookups(tmp_path):
    entries = [
        {"variant": "float32", "metrics": {"AP": 0.5}},
        {"variant": "qat_int8", "metrics": {"AP": 0.49, "AP50": 0.8}},
    ]
    doc = metrics_document(entries, "float32", "qat_int8", {"blessed": True})
    (tmp_path / METRICS_FILE).write_text(json.dumps(doc))
    read = read_metrics(str(tmp_path))
    assert read == doc and read["blessing"] == {"blessed": True}
    assert variant_metrics(read, "qat_int8") == {"AP": 0.49, "AP50": 0.8}
    assert candidate_metric(read) == ("qat_int8", 0.49)
    assert candidate_metric(read, "AP75") == ("qat_int8", None)


def test_missing_or_broken_documents_read_as_empty(tmp_path):
    assert read_metrics(str(tmp_path)) == {}
    (tmp_path / METRICS_FILE).write_text("[1, 2]")
    assert read_metrics(str(tmp_path)) == {}
    (tmp_path / METRICS_FILE).write_bytes(b"\xff\xfe")
    assert read_metrics(str(tmp_path)) == {}
