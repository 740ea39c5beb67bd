"""``qat.mode: auto`` in the task switch: the PTQ check decides whether QAT runs, and the
decision travels to the converter (no qat_int8) and the Evaluator (ptq_int8 blessed).

The stages themselves are replaced by recorders here (each is tested in its own
package, and the tiny e2e runs the real chain with a loose rule)."""

import json
from types import SimpleNamespace

import pytest

from model_maker import tasks
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.settings import from_json, to_json
from model_maker.object_detector.options import TFLiteSetOptions


class Stages:
    """Recorders standing in for conversion, evaluation and QAT.

    ``values``: the metric each candidate scores (``ptq_int8``, ``qat`` for the
    fake-quant model, ``("ptq_mixed", N)`` per float-layer count).
    """

    def __init__(self, monkeypatch, baseline, **values):
        self.calls = []
        self.baseline, self.values, self.float_layers = baseline, values, None
        monkeypatch.setattr(tasks, "model_task", lambda model_dir: "object_detection")
        monkeypatch.setattr(tasks, "manifest_task", lambda folder: "object_detection")
        monkeypatch.setattr(tasks, "qat_from_examples", self.qat)
        monkeypatch.setattr(
            "model_maker.object_detector.tflite_set.convert_trained_model", self.convert
        )
        monkeypatch.setattr(
            "model_maker.object_detector.evaluator.evaluate_artifacts", self.evaluate
        )

    def qat(self, examples, model_dir, output_dir, hparams, **kwargs):
        self.calls.append(("qat", output_dir))
        return SimpleNamespace(seconds=12.5, steps=3, metrics={"AP": self.values.get("qat")})

    def convert(self, model_dir, output_dir, options, *, qat_model_dir=None, examples_uri=None):
        convert = options.convert
        mixed = convert.mixed_float_layers if "ptq_mixed" in convert.variants else None
        self.float_layers = mixed
        self.calls.append(("convert", convert.variants, qat_model_dir, mixed))
        return {"variants": []}

    def evaluate(self, examples, tflite_dir, output_dir, options, **kwargs):
        from model_maker.core.evaluation import decide_blessing

        self.calls.append(("evaluate", options.candidate, options.latency_runs))
        candidate = options.candidate
        key = ("ptq_mixed", self.float_layers) if candidate == "ptq_mixed" else candidate
        metrics = {"keras_float": {"AP": self.baseline}, candidate: {"AP": self.values[key]}}
        rule = EvaluateOptions(candidate=candidate, max_drop=options.max_drop)
        entries = [{"variant": candidate, "bytes": 1000, "latency": {"median_ms": 2.5}}]
        return SimpleNamespace(decision=decide_blessing(metrics, rule), variants=entries)


def _check(max_drop):
    rule = EvaluateOptions(max_drop=max_drop)
    return tasks.AccuracyCheck(rule=rule, converter=TFLiteSetOptions())


def test_loose_rule_skips_qat_and_the_set_and_blessing_follow(monkeypatch, tmp_path):
    stages = Stages(monkeypatch, baseline=0.505, ptq_int8=0.50)
    out = str(tmp_path / "qat")
    decision, result = tasks.qat_or_skip("ex", "float", out, None, _check(1.0))
    assert result is None and not decision.qat and decision.mode == "auto"
    assert decision.ptq_metric == 0.50 and decision.baseline_metric == 0.505
    assert "QAT skipped: ptq_int8 AP 50.00 vs keras_float 50.50: drop 0.50" in decision.reason
    # the check converted ptq_int8 only, without layer errors, and scored it without latency
    assert stages.calls == [
        ("convert", ("ptq_int8",), None, None),
        ("evaluate", "ptq_int8", 10),
    ]
    row = dict(decision.candidates[0])
    assert len(decision.candidates) == 1
    assert row.pop("seconds") >= 0 and decision.check_seconds >= 0
    assert row == {"variant": "ptq_int8", "float_layers": None, "metric": 0.50,
                   "blessed": True, "bytes": 1000, "latency_ms": 2.5}  # fmt: skip
    saved = json.loads((tmp_path / "qat" / tasks.QAT_DECISION_FILE).read_text())
    assert saved["qat"] is False and saved["check_seconds"] >= 0
    # the converter leaves qat_int8 out and passes no QAT model; the decision goes along
    stages.calls.clear()
    tflite = str(tmp_path / "tflite")
    tasks.convert_trained_model(
        "float", tflite, TFLiteSetOptions(), qat_model_dir=out, examples_uri="ex"
    )
    assert stages.calls == [("convert", ("float32", "ptq_int8"), None, None)]
    assert tasks.read_qat_decision(tflite) == decision
    # the Evaluator's qat_int8 candidate becomes ptq_int8
    stages.calls.clear()
    evaluation = str(tmp_path / "evaluation")
    tasks.evaluate_artifacts("ex", tflite, evaluation, EvaluateOptions())
    assert stages.calls == [("evaluate", "ptq_int8", 20)]


def test_strict_rule_runs_qat_and_keeps_qat_int8(monkeypatch, tmp_path):
    stages = Stages(monkeypatch, baseline=0.50, ptq_int8=0.45, qat=0.495)
    out = str(tmp_path / "qat")
    decision, result = tasks.qat_or_skip("ex", "float", out, None, _check(1.0))
    assert result.steps == 3 and decision.qat and decision.qat_seconds == 12.5
    assert decision.candidate == "qat_int8"
    assert decision.reason == (
        "QAT ran: ptq_int8 AP 45.00 vs keras_float 50.00: drop 5.00 points, more than the allowed 1"
    )
    assert [c[0] for c in stages.calls] == ["convert", "evaluate", "qat"]
    assert [(r["variant"], r["blessed"]) for r in decision.candidates] == [
        ("ptq_int8", False),
        ("qat (fake-quant)", True),
    ]
    stages.calls.clear()
    tasks.convert_trained_model("float", str(tmp_path / "t"), TFLiteSetOptions(), qat_model_dir=out)
    assert stages.calls == [("convert", ("float32", "ptq_int8", "qat_int8"), out, None)]


def test_when_qat_misses_too_mixed_files_with_more_float_layers_are_tried(monkeypatch, tmp_path):
    stages = Stages(
        monkeypatch, baseline=0.50, ptq_int8=0.40, qat=0.45,
        **{"ptq_mixed_5": 0.46}, ptq_mixed_10=0.492, ptq_mixed_20=0.5,
    )  # fmt: skip
    stages.values.update({("ptq_mixed", n): stages.values[f"ptq_mixed_{n}"] for n in (5, 10, 20)})
    out = str(tmp_path / "qat")
    decision, _ = tasks.qat_or_skip("ex", "float", out, None, _check(1.0))
    # 10 float layers is the first rung within 1 point; 20 is never tried
    assert decision.candidate == "ptq_mixed" and decision.mixed_float_layers == 10
    assert [(r["variant"], r["float_layers"], r["blessed"]) for r in decision.candidates] == [
        ("ptq_int8", None, False),
        ("qat (fake-quant)", None, False),
        ("ptq_mixed", 5, False),
        ("ptq_mixed", 10, True),
    ]
    assert "ptq_mixed with 10 float layers meets it: ptq_mixed AP 49.20" in decision.reason
    # the converter writes that ptq_mixed beside the others; the Evaluator blesses it
    stages.calls.clear()
    tflite = str(tmp_path / "tflite")
    tasks.convert_trained_model("float", tflite, TFLiteSetOptions(), qat_model_dir=out)
    assert stages.calls == [("convert", ("float32", "ptq_int8", "qat_int8", "ptq_mixed"), out, 10)]
    stages.calls.clear()
    tasks.evaluate_artifacts("ex", tflite, str(tmp_path / "ev"), EvaluateOptions())
    assert stages.calls == [("evaluate", "ptq_mixed", 20)]
    # nothing meets the rule: qat_int8 stays the candidate and the reason says what was tried
    stages.values.update({("ptq_mixed", n): 0.3 for n in (5, 10, 20)})
    decision, _ = tasks.qat_or_skip("ex", "float", str(tmp_path / "q2"), None, _check(1.0))
    assert decision.candidate == "qat_int8" and len(decision.candidates) == 5
    assert decision.reason.endswith("and so did ptq_mixed with [5, 10, 20] float layers")


def test_always_mode_runs_qat_without_a_check_or_a_decision_file(monkeypatch, tmp_path):
    stages = Stages(monkeypatch, baseline=0.5, ptq_int8=0.5)
    decision, result = tasks.qat_or_skip("ex", "float", str(tmp_path), None)
    assert decision.mode == "always" and decision.qat and result is not None
    assert [c[0] for c in stages.calls] == ["qat"]
    assert tasks.read_qat_decision(str(tmp_path)) is None


def test_accuracy_check_round_trips_as_the_components_json():
    check = _check(0.5)
    assert from_json(tasks.AccuracyCheck, to_json(check)) == check
    with pytest.raises(Exception, match="rule.candidate"):
        tasks.AccuracyCheck(rule=EvaluateOptions(candidate="float32"))
    with pytest.raises(Exception, match=r"mixed_float_layers: must grow: \[5, 5\]"):
        tasks.AccuracyCheck(mixed_float_layers=(5, 5))
    with pytest.raises(Exception, match=r"mixed_float_layers\[0\]"):
        tasks.AccuracyCheck(mixed_float_layers=(0,))
