"""The whole pipeline on a tiny config, for real: killed during QAT, resumed, then cached.

See tests/tiny_pipeline.py for the config and the kill. Every component runs:
ExampleGen (Beam), Trainer, QATTrainer, TFLiteConverter, Evaluator, Pusher.
"""

import glob
import json
import os

import pytest

from pipeline.runners import metadata_path
from tests.tiny_pipeline import QAT_STEPS_PER_EPOCH, qatflow

ALL = {"DetectionExampleGen", "Trainer", "QATTrainer", "TFLiteConverter", "Evaluator", "Pusher"}


def _store(root):
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    return metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(metadata_path(str(root)))
    )


def _runs(store):
    return sorted(
        store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch
    )


def _states(store, run):
    """{component id: execution state name} of one pipeline run."""
    from ml_metadata.proto import metadata_store_pb2

    names = metadata_store_pb2.Execution.State.Name
    # TFX names an execution's type after the component class (components.x.component.Name)
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {
        types[e.type_id]: names(e.last_known_state) for e in store.get_executions_by_context(run.id)
    }


def test_killed_run_stopped_inside_qat(tiny_pipeline):
    store = _store(tiny_pipeline.root)
    first = _states(store, _runs(store)[0])
    assert first["DetectionExampleGen"] == first["Trainer"] == "COMPLETE", first
    assert first["QATTrainer"] != "COMPLETE", first
    assert not {"TFLiteConverter", "Evaluator", "Pusher"} & set(first), first
    # killed after QAT epoch 1 was checkpointed and before epoch 2 was
    assert tiny_pipeline.checkpoints_at_kill == ["ckpt-1"]


def test_rerun_takes_finished_components_from_cache_and_resumes_qat(tiny_pipeline):
    store = _store(tiny_pipeline.root)
    runs = _runs(store)
    second = _states(store, runs[1])
    assert set(second) == ALL, second
    assert second["DetectionExampleGen"] == second["Trainer"] == "CACHED", second
    for component in ALL - {"DetectionExampleGen", "Trainer"}:
        assert second[component] == "COMPLETE", second
    # QAT went on from its epoch-1 checkpoint: the optimizer step count covers both
    # epochs, but only epoch 2 was trained in this run.
    reports = glob.glob(str(tiny_pipeline.root / "QATTrainer" / "*" / "*" / "qat.json"))
    assert len(reports) == 1, reports  # the killed execution wrote none
    report = json.loads(open(reports[0]).read())
    assert report["steps"] == 2 * QAT_STEPS_PER_EPOCH
    assert len(report["history"]["loss"]) == 1


def test_run_prints_table_blessing_and_push(tiny_pipeline):
    out = tiny_pipeline.resumed.stdout
    for variant in ("keras_float", "float32", "ptq_int8", "qat_int8"):
        assert variant in out, out
    assert "blessed:" in out and "summary:" in out
    root = tiny_pipeline.root
    latest = json.loads((root / "latest_run.json").read_text())
    assert latest["pipeline_name"] == "qatflow-e2e" and latest["run_id"]
    assert os.path.isfile(os.path.join(latest["evaluation"], "metrics.json"))
    assert (root / "config.yaml").is_file()


def test_metrics_sizes_and_blessing_agree(tiny_pipeline):
    latest = json.loads((tiny_pipeline.root / "latest_run.json").read_text())
    document = json.loads(open(os.path.join(latest["evaluation"], "metrics.json")).read())
    by_name = {e["variant"]: e for e in document["variants"]}
    assert {"keras_float", "float32", "ptq_int8", "qat_int8"} <= set(by_name)
    for entry in by_name.values():
        assert {"AP", "AP50", "AP75", "ARmax100"} <= set(entry["metrics"])
    # int8 files hold int8 weights: about a quarter of float32.
    assert by_name["ptq_int8"]["bytes"] < 0.4 * by_name["float32"]["bytes"]
    assert by_name["qat_int8"]["bytes"] < 0.4 * by_name["float32"]["bytes"]
    # The blessing follows the rule on the reported numbers (evaluate.max_drop 1.0 point).
    baseline = by_name[document["baseline"]]["metrics"]["AP"]
    candidate = by_name["qat_int8"]["metrics"]["AP"]
    assert latest["blessed"] == (candidate >= baseline - 0.01)
    if latest["blessed"]:
        assert os.path.isfile(os.path.join(latest["pushed"], "qat_int8.tflite"))
        assert os.path.isfile(os.path.join(latest["pushed"], "labels.txt"))
    else:
        assert latest["pushed"] == ""


@pytest.fixture(scope="module")
def third_run(tiny_pipeline):
    return qatflow("run", "--config", str(tiny_pipeline.config))


def test_third_run_takes_everything_from_cache(tiny_pipeline, third_run):
    assert third_run.returncode == 0, third_run.stderr[-3000:]
    store = _store(tiny_pipeline.root)
    runs = _runs(store)
    assert len(runs) >= 3  # the notebook tests may have run it once more
    assert _states(store, runs[-1]) == dict.fromkeys(ALL, "CACHED")
    # Nothing was pushed twice: the Pusher's output is the cached one.
    versions = [d for d in os.listdir(tiny_pipeline.root / "serving") if d.startswith("v")]
    assert len(versions) <= 1


def test_qat_curves_span_the_kill_and_the_resume(tiny_pipeline):
    # The QATTrainer logs the Trainer's scalars into its ModelRun; the killed attempt's
    # first epoch and the resumed second both show, as the Trainer's curves do.
    from tests.pipeline.test_e2e_classification import _event_scalars

    root = tiny_pipeline.root
    runs = {p.parent.name: p for p in root.glob("QATTrainer/model_run/*/train")}
    assert runs, "the QATTrainer wrote no ModelRun with train/ logs"
    latest = max(runs, key=int)
    train = _event_scalars(runs[latest])
    float_train = _event_scalars(next(root.glob("Trainer/model_run/*/train")))
    assert {"epoch_loss", "epoch_det_loss", "epoch_learning_rate"} <= set(train)
    assert set(float_train) <= set(train)
    assert sorted({step for step, _ in train["epoch_loss"]}) == [1, 2]
    validation = _event_scalars(runs[latest].parent / "validation")
    report = json.loads(
        max(root.glob("QATTrainer/qat_model/*/qat.json"), key=os.path.getmtime).read_text()
    )
    assert validation["epoch_AP"] == [(2, pytest.approx(report["metrics"]["AP"]))]


def test_dashboard_reads_the_evaluators_gallery_and_pr_curves(tiny_pipeline):
    # The two sides of the gallery contract, the Evaluator's writer and the dashboard's
    # reader, on a real run: nothing left out, every variant, thumbnails in the artifact.
    from dashboard.gallery import read_detections
    from dashboard.pr_curves import read_pr_curves

    latest = json.loads((tiny_pipeline.root / "latest_run.json").read_text())
    evaluation = latest["evaluation"]
    document = json.loads(open(os.path.join(evaluation, "metrics.json")).read())
    variants = {e["variant"] for e in document["variants"]}
    gallery = read_detections(os.path.join(evaluation, "detections.json"))
    assert not gallery.error and gallery.skipped == 0 and gallery.images
    assert set(gallery.variants) == variants
    assert all(os.path.isfile(os.path.join(evaluation, im.thumbnail)) for im in gallery.images)
    curves = read_pr_curves(os.path.join(evaluation, "pr_curves.json"))
    assert set(curves.variants) == variants
    assert os.path.getsize(os.path.join(evaluation, "report.html")) > 0
    assert "data:image/jpeg;base64," in open(os.path.join(evaluation, "report.html")).read()


def test_console_holds_progress_and_warnings_but_no_library_chatter(tiny_pipeline):
    # Issue 20: at the default verbosity the console of `qatflow run` is ours: progress,
    # the table (stdout, above) and real warnings. TensorFlow's, LiteRT's, TFX's and
    # Beam's start-up chatter is for -v (tests/pipeline/test_cli.py checks that side).
    import re

    err = tiny_pipeline.resumed.stderr
    chatter = (
        "absl::InitializeLog()",  # absl C++: logging before it was initialised
        "port.cc:",  # TensorFlow: oneDNN custom operations are on
        "cudart_stub.cc:",  # TensorFlow: no CUDA drivers on this machine
        "cpu_feature_guard.cc:",  # TensorFlow: CPU instructions it was not built for
        "property_predicate is not supported",  # TFX's input resolution, every channel
        "TensorFlow Lite XNNPACK delegate",  # LiteRT: the default CPU delegate
        "fully_quantize:",  # the TFLite converter's quantizer
        "semi_persistent_directory",  # Beam worker start-up
        "Discarding unparseable args",  # Beam worker start-up
    )
    if not os.path.exists("/proc/driver/nvidia/version"):  # no GPU driver: no CUDA error
        chatter += ("failed call to cuInit",)
    native_info = re.compile(r"I\d{4} \d\d:\d\d:\d+\.\d+ ")  # a C++ INFO record (absl)
    found = [
        line
        for line in err.splitlines()
        if any(c in line for c in chatter) or native_info.match(line)
    ]
    assert not found, "library chatter on the default console:\n" + "\n".join(found)
    # Our progress is still there, one line per component that ran.
    for progress in ("qatflow: QAT of ", "qatflow: TFLite set in ", "evaluating qat_int8"):
        assert progress in err, err[-3000:]


@pytest.fixture(scope="module")
def auto_run(tiny_pipeline, tmp_path_factory):
    """qat.mode auto with a rule any PTQ model meets (max_drop 100 points); ExampleGen and
    the Trainer come from the cache; pushed elsewhere so the main run's pushes stay one."""
    push = tmp_path_factory.mktemp("auto-push")
    return qatflow(
        "run", "--config", str(tiny_pipeline.config), "--set", "qat.mode=auto",
        "--set", "evaluate.max_drop=100", "--set", f"push.destination={push}",
    )  # fmt: skip


def test_auto_mode_with_a_loose_rule_skips_qat_and_blesses_ptq(tiny_pipeline, auto_run):
    assert auto_run.returncode == 0, auto_run.stderr[-3000:]
    store = _store(tiny_pipeline.root)
    states = _states(store, _runs(store)[-1])
    assert states["DetectionExampleGen"] == "CACHED" and states["Trainer"] == "CACHED"
    assert states["QATTrainer"] == "COMPLETE"
    (qat,) = [
        a
        for a in store.get_artifacts_by_context(_runs(store)[-1].id)
        if a.custom_properties.get("qat_decision")
    ]
    assert qat.custom_properties["qat_decision"].string_value == "skipped"
    assert qat.custom_properties["ptq_check_AP"].double_value >= 0
    # no QAT model: only the decision and the check's own files
    assert sorted(os.listdir(qat.uri)) == ["ptq_check", "qat_decision.json"]
    latest = json.loads((tiny_pipeline.root / "latest_run.json").read_text())
    document = json.loads(open(os.path.join(latest["evaluation"], "metrics.json")).read())
    assert {e["variant"] for e in document["variants"]} == {"keras_float", "float32", "ptq_int8"}
    blessing = json.loads(open(os.path.join(latest["evaluation"], "blessing.json")).read())
    assert blessing["candidate"] == "ptq_int8" and blessing["blessed"] is True
    assert os.path.isfile(os.path.join(latest["pushed"], "ptq_int8.tflite"))
    assert "QAT skipped" in auto_run.stdout + auto_run.stderr
