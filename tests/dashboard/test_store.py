"""The read-only MLMD reader against stores written the way TFX writes them."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from store_builder import CLASSES, variant_metrics

from dashboard import store

COMPONENTS = ["DetectionExampleGen", "Trainer", "QATTrainer", "TFLiteConverter", "Evaluator",
              "Pusher"]  # fmt: skip


def _reader(root) -> store.MetadataReader:
    [ref] = store.find_stores(str(root))
    return store.MetadataReader(ref)


def test_find_stores_two_levels_deep(tmp_path):
    for folder in ("metadata.sqlite", "a/metadata.sqlite", "b/c/metadata.sqlite",
                   "d/e/f/metadata.sqlite", ".hidden/metadata.sqlite"):  # fmt: skip
        (tmp_path / folder).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder).write_bytes(b"")
    assert [r.key for r in store.find_stores(str(tmp_path))] == [".", "a", "b/c"]
    assert store.find_stores(str(tmp_path / "nowhere")) == []


def test_runs_newest_first_with_status_blessing_task_and_candidate_ap(small_root):
    root, built = small_root
    rows = _reader(root).runs()
    assert [r.run_id for r in rows] == [b.run_id for b in reversed(built)]
    failed, cached, fresh = rows
    assert (fresh.status, fresh.executions, fresh.cached) == ("complete", 6, 0)
    assert fresh.pipeline == "qatflow" and fresh.store == "demo"
    assert fresh.candidate == "qat_int8"
    assert (fresh.task, fresh.metric) == ("object_detection", "AP")
    # The failed run's task comes from the Trainer's options (no metrics.json).
    assert (failed.task, failed.metric) == ("object_detection", "AP")
    assert fresh.candidate_value == pytest.approx(0.42 - 0.004)
    assert fresh.blessed is True  # 0.4 points drop, 1 allowed
    assert (cached.status, cached.cached) == ("complete", 1)
    assert cached.candidate_value == pytest.approx(0.45 - 0.02)
    assert cached.blessed is False  # 2 points drop
    assert (failed.status, failed.executions) == ("failed", 5)
    assert failed.candidate_value is None and failed.blessed is None
    assert all(r.duration_s is not None and r.duration_s >= 0 for r in rows)
    assert fresh.started <= cached.started <= failed.started


def test_run_detail_dag_lineage_and_states(small_root):
    root, built = small_root
    reader = _reader(root)
    first = reader.run(built[0].run_id)
    assert [e.component for e in first.executions] == COMPONENTS
    assert ("Trainer", "QATTrainer") in first.edges
    assert ("QATTrainer", "TFLiteConverter") in first.edges
    assert ("Evaluator", "Pusher") in first.edges
    assert ("Pusher", "Evaluator") not in first.edges
    assert store.levels(first) == {
        "DetectionExampleGen": 0, "Trainer": 1, "QATTrainer": 2, "TFLiteConverter": 3,
        "Evaluator": 4, "Pusher": 5,
    }  # fmt: skip
    evaluator = first.executions[4]
    assert sorted(a.key for a in evaluator.inputs) == ["examples", "model", "tflite"]
    assert [(a.key, a.type_name) for a in evaluator.outputs] == [
        ("blessing", "ModelBlessing"), ("evaluation", "ModelEvaluation"),
    ]  # fmt: skip
    tflite = next(a for a in evaluator.inputs if a.key == "tflite")
    assert tflite.producer == "TFLiteConverter" and tflite.type_name == "components.TFLiteModel"
    assert "tfx_version" not in tflite.properties
    assert evaluator.properties["options"]["max_drop"] == 1.0  # the JSON options, parsed
    assert all(e.state == "COMPLETE" and not e.cached for e in first.executions)

    # The cache hit reuses the first run's Examples: same artifact id, produced by ExampleGen.
    second = reader.run(built[1].run_id)
    gen = second.executions[0]
    assert gen.state == "CACHED" and gen.cached
    assert gen.outputs[0].id == first.executions[0].outputs[0].id
    trainer_input = second.executions[1].inputs[0]
    assert trainer_input.id == gen.outputs[0].id and trainer_input.producer == "DetectionExampleGen"

    third = reader.run(built[2].run_id)
    assert [e.component for e in third.executions] == COMPONENTS[:5]
    assert third.executions[-1].state == "FAILED"
    assert third.executions[-1].message == "DataError: no eval_annotations.json"
    assert third.metrics == {} and third.blessing is None and third.evaluation_uri == ""
    assert reader.run("no-such-run") is None


def test_evaluation_blessing_logs_and_config(small_root):
    root, built = small_root
    detail = _reader(root).run(built[1].run_id)
    assert detail.evaluation_uri == built[1].evaluation_uri
    by_variant = {v["variant"]: v for v in detail.metrics["variants"]}
    expected = variant_metrics(built[1].spec)
    for name in ("float32", "ptq_int8", "qat_int8"):
        assert by_variant[name]["metrics"]["AP"] == pytest.approx(expected[name]["AP"])
        for cls in CLASSES:
            key = f"AP_/{cls}"
            assert by_variant[name]["metrics"][key] == pytest.approx(expected[name][key])
    assert detail.blessing.blessed is False and detail.blessing.candidate == "qat_int8"
    assert "drop 2.00 points, more than the allowed 1" in detail.blessing.reason
    assert detail.blessing.details["threshold"] == pytest.approx(0.45 - 0.01)
    assert detail.log_dirs == [("Trainer", built[1].log_dir)]
    assert detail.config["Trainer.options.train.epochs"] == 6
    assert detail.config["Trainer.options.train.learning_rate"] == pytest.approx(0.05)
    # the JSON options exec property, parsed and flattened
    assert detail.config["Trainer.options.model.hparams.map_freq"] == 1
    assert detail.config["TFLiteConverter.options.convert.variants"] == [
        "float32", "ptq_int8", "qat_int8",
    ]  # fmt: skip
    assert detail.config["Evaluator.options.max_drop"] == 1.0
    assert detail.pushed["pushed"] == 0 and detail.pushed["reason"].startswith("not blessed")


def test_reader_never_writes(small_root):
    root, built = small_root
    path = os.path.join(root, "demo", "metadata.sqlite")
    before = hashlib.sha256(open(path, "rb").read()).hexdigest()
    reader = _reader(root)
    reader.runs()
    for run in built:
        reader.run(run.run_id)
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == before


def test_missing_empty_and_corrupt_stores(tmp_path):
    missing = store.StoreRef("x", str(tmp_path / "x" / "metadata.sqlite"))
    with pytest.raises(store.StoreError) as info:
        store.MetadataReader(missing)
    assert info.value.kind == "missing"

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metadata.sqlite").write_bytes(b"")
    with pytest.raises(store.StoreError) as info:
        store.MetadataReader(store.StoreRef("empty", str(tmp_path / "empty" / "metadata.sqlite")))
    assert info.value.kind == "empty"

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "metadata.sqlite").write_bytes(b"not a database\n" * 100)
    with pytest.raises(store.StoreError) as info:
        store.MetadataReader(store.StoreRef("g", str(tmp_path / "garbage" / "metadata.sqlite")))
    assert info.value.kind == "corrupt" and "not an SQLite database" in str(info.value)

    # A real SQLite file that is not an ML Metadata store: read-only open refuses it.
    (tmp_path / "other").mkdir()
    path = str(tmp_path / "other" / "metadata.sqlite")
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(store.StoreError) as info:
        store.MetadataReader(store.StoreRef("other", path)).runs()
    assert info.value.kind == "corrupt"


def test_status_and_flatten_helpers():
    assert store.run_status([]) == "empty"
    assert store.run_status(["COMPLETE", "CACHED"]) == "complete"
    assert store.run_status(["COMPLETE", "RUNNING"]) == "running"
    assert store.run_status(["COMPLETE", "FAILED", "RUNNING"]) == "failed"
    assert store.flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {
        "a.b": 1, "a.c.d": [1], "e": {},
    }  # fmt: skip


def test_locked_store_is_reported_busy_not_corrupt():
    busy = store._read_error("/x/metadata.sqlite", RuntimeError("database is locked"))
    assert busy.kind == "busy" and "a run is writing" in str(busy)
    assert store._read_error("/x", RuntimeError("malformed")).kind == "corrupt"
