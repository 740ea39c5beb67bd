"""The whole pipeline on a tiny config: every component runs for real, then a cached rerun.

Tiny means 8 synthetic images, one epoch of float training and of QAT at the
smallest input (128), 4 calibration images; it still goes through ExampleGen
(Beam), Trainer, QATTrainer, TFLiteConverter (float32, ptq_int8, qat_int8),
Evaluator (Beam + LiteRT + pycocotools) and Pusher.
"""

import json
import os
import subprocess
import sys

import pytest

from pipeline.runners import metadata_path

TINY = """
name: qatflow-e2e
data:
  format: coco
  input: {data}/images
  annotations: {data}/annotations.json
  split:
    ratios: {{train: 0.5, eval: 0.5}}
model:
  image_size: 128
train:
  epochs: 1
  batch_size: 2
  var_freeze_expr: ""
qat:
  epochs: 1
  batch_size: 2
convert:
  representative_samples: 4
evaluate:
  latency_runs: 3
runner:
  pipeline_root: {root}
  direct_num_workers: 1
"""


def _qatflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    data, root = work / "data", work / "root"
    made = _qatflow("-q", "demo-data", "--output", str(data), "--images", "8", "--seed", "5")
    assert made.returncode == 0, made.stderr
    config = work / "tiny.yaml"
    config.write_text(TINY.format(data=data, root=root))
    first = _qatflow("run", "--config", str(config))
    assert first.returncode == 0, first.stderr[-3000:]
    return config, root, first


def test_run_prints_table_blessing_and_push(tiny_run):
    _, root, first = tiny_run
    out = first.stdout
    for variant in ("keras_float", "float32", "ptq_int8", "qat_int8"):
        assert variant in out, out
    assert "blessed:" in out and "summary:" in out
    latest = json.loads((root / "latest_run.json").read_text())
    assert latest["pipeline_name"] == "qatflow-e2e" and latest["run_id"]
    assert os.path.isfile(os.path.join(latest["evaluation"], "metrics.json"))
    assert (root / "config.yaml").is_file()


def test_metrics_sizes_and_blessing_agree(tiny_run):
    _, root, _ = tiny_run
    latest = json.loads((root / "latest_run.json").read_text())
    document = json.loads(open(os.path.join(latest["evaluation"], "metrics.json")).read())
    by_name = {e["variant"]: e for e in document["variants"]}
    assert {"keras_float", "float32", "ptq_int8", "qat_int8"} <= set(by_name)
    for entry in by_name.values():
        assert {"AP", "AP50", "AP75", "ARmax100"} <= set(entry["metrics"])
    # int8 files hold int8 weights: about a quarter of float32.
    assert by_name["ptq_int8"]["bytes"] < 0.4 * by_name["float32"]["bytes"]
    assert by_name["qat_int8"]["bytes"] < 0.4 * by_name["float32"]["bytes"]
    # The blessing follows the rule on the reported numbers (max_ap_drop 1.0 point).
    baseline = by_name[document["baseline"]]["metrics"]["AP"]
    candidate = by_name["qat_int8"]["metrics"]["AP"]
    assert latest["blessed"] == (candidate >= baseline - 0.01)
    if latest["blessed"]:
        assert os.path.isfile(os.path.join(latest["pushed"], "qat_int8.tflite"))
        assert os.path.isfile(os.path.join(latest["pushed"], "labels.txt"))
    else:
        assert latest["pushed"] == ""


def test_rerun_takes_everything_from_cache(tiny_run):
    config, root, _ = tiny_run
    second = _qatflow("run", "--config", str(config))
    assert second.returncode == 0, second.stderr[-3000:]

    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path(str(root)))
    )
    runs = sorted(
        store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch
    )
    assert len(runs) == 2
    executions = store.get_executions_by_context(runs[-1].id)
    components = {
        e.properties["component_id"].string_value if "component_id" in e.properties else e.type
        for e in executions
    }
    assert len(executions) == 6, components
    states = {e.last_known_state for e in executions}
    assert states == {metadata_store.metadata_store_pb2.Execution.CACHED}
    # Nothing was pushed twice: the Pusher's output is the cached one.
    versions = [d for d in os.listdir(root / "serving") if d.startswith("v")]
    assert len(versions) <= 1
