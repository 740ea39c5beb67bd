"""The Evaluator with the converter's layer_errors.json: copied unchanged, the worst layers in
report.md, report.html and metrics.json, the layers ptq_mixed kept float; nothing without it.

The file and the float layers are the converter's own (the tiny detector converted with
ptq_int8 and ptq_mixed); the variants scored are grid detectors (fast, known AP).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from model_maker.core.evaluation import (
    BlessingRule,
    decide_blessing,
    render_html,
    render_markdown,
)
from model_maker.core.layer_errors import LAYER_ERRORS_FILE
from model_maker.core.quantization_report import (
    FLOAT_LAYER_KEYS,
    QuantizationReport,
    read_quantization_report,
)
from tests.model_maker.core.detector_fixtures import (
    write_examples_artifact,
    write_tflite_artifact,
)

HOSTILE = '<img src=x onerror="window.__xss=1">|b'


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The tiny detector's TFLite set: ptq_int8 and ptq_mixed (its 2 worst layers float)."""
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.object_detector.options import TFLiteSetOptions
    from model_maker.object_detector.tflite_set import export_tflite_set
    from tests.model_maker.object_detector.tiny_detector import (
        build_tiny_detector,
        calibration_images,
        tiny_anchors,
    )

    root = tmp_path_factory.mktemp("tiny_set")
    convert = ConvertOptions(
        variants=("ptq_int8", "ptq_mixed"),
        representative_samples=8,
        layer_error_samples=3,
        mixed_float_layers=2,
    )
    export_tflite_set(
        str(root), build_tiny_detector(), anchors=tiny_anchors(), num_classes=2,
        label_map={1: "a", 2: "b"}, options=TFLiteSetOptions(convert=convert),
        representative_data=calibration_images(8),
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def evaluated(converted, tmp_path_factory):
    """evaluate_artifacts on grid detectors whose set carries the converter's files."""
    from model_maker.core.evaluate_options import EvaluateOptions
    from model_maker.object_detector.evaluator import evaluate_artifacts

    root = tmp_path_factory.mktemp("layer_eval")
    examples = write_examples_artifact(root)
    tflite = write_tflite_artifact(
        root / "tflite", {"float32": False, "ptq_int8": True, "ptq_mixed": True}
    )
    shutil.copy(converted / LAYER_ERRORS_FILE, tflite / LAYER_ERRORS_FILE)
    source = json.loads((converted / "manifest.json").read_text())["variants"]
    mixed = next(e for e in source if e["variant"] == "ptq_mixed")
    manifest = json.loads((tflite / "manifest.json").read_text())
    for entry in manifest["variants"]:
        if entry["variant"] == "ptq_mixed":
            entry.update({k: mixed[k] for k in FLOAT_LAYER_KEYS})
    (tflite / "manifest.json").write_text(json.dumps(manifest))
    result = evaluate_artifacts(
        str(examples), str(tflite), str(root / "evaluation"),
        EvaluateOptions(candidate="ptq_int8", latency_runs=0),
    )  # fmt: skip
    document = json.loads((tflite / LAYER_ERRORS_FILE).read_text())
    return result, tflite, root / "evaluation", document, mixed


def _section_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under ``heading`` in a Markdown report."""
    lines = markdown.split("\n")
    start = lines.index(heading)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| rank"):
            table.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return table


def test_layer_errors_json_is_copied_unchanged_and_summed_up_in_metrics(evaluated):
    result, tflite, out, document, mixed = evaluated
    copied = out / LAYER_ERRORS_FILE
    assert copied.read_bytes() == (tflite / LAYER_ERRORS_FILE).read_bytes()
    assert result.files[LAYER_ERRORS_FILE] == str(copied)
    metrics = json.loads((out / "metrics.json").read_text())
    # the existing contract is untouched
    assert [v["variant"] for v in metrics["variants"]] == ["float32", "ptq_int8", "ptq_mixed"]
    assert metrics["candidate"] == "ptq_int8" and metrics["blessing"]["blessed"] is True
    assert len(document["layers"]) > 10
    assert metrics["layer_errors"] == {
        "file": LAYER_ERRORS_FILE,
        "variant": "ptq_int8",
        "samples": 3,
        "rank_metric": "rmse_over_scale",
        "num_layers": len(document["layers"]),
        "worst": document["layers"][:10],
    }
    by_variant = {v["variant"]: v for v in metrics["variants"]}
    assert by_variant["ptq_mixed"]["float_layers"] == mixed["float_layers"]
    assert by_variant["ptq_mixed"]["float_layer_rule"] == "the 2 worst layers by rmse_over_scale"
    assert "float_layers" not in by_variant["ptq_int8"]


def test_reports_list_the_ten_worst_layers_in_order_with_keras_names(evaluated):
    _, _, out, document, mixed = evaluated
    worst = document["layers"][:10]
    md = (out / "report.md").read_text()
    heading = "## Worst int8 layers (ptq_int8, RMSE in quantization steps, 3 calibration images)"
    rows = _section_rows(md, heading)
    assert [r[0] for r in rows] == [str(i) for i in range(1, 11)]
    assert [r[1].split(" (+")[0] for r in rows] == [w["layer"] for w in worst]
    assert all(w["layer"] for w in worst)  # the tiny detector's convs have Keras names
    assert [r[2] for r in rows] == [w["op"] for w in worst]
    assert [r[3] for r in rows] == [f"{w['rmse_over_scale']:.2f}" for w in worst]
    assert [r[6] for r in rows] == [w["tensor"] for w in worst]  # short names stay whole
    fused = next(w for w in worst if len(w["keras_layers"]) > 1)
    others = [n for n in fused["keras_layers"] if n != fused["layer"]]
    assert f"{fused['layer']} (+ {', '.join(others)})" in md
    names = ", ".join(f["layer"] for f in mixed["float_layers"])
    assert (
        f"ptq_mixed keeps 2 layer(s) in float (the 2 worst layers by rmse_over_scale): {names}."
        in md
    )
    page = (out / "report.html").read_text()
    table = page[page.index('<table class="layer-errors">') :].split("</table>")[0]
    titles = re.findall(r'<td title="([^"]*)">', table)
    assert titles == [w["tensor"] for w in worst]
    assert "Worst int8 layers (ptq_int8, RMSE in quantization steps, 3 calibration images)" in page


def _report(document: dict, mixed: dict | None = None) -> tuple[str, str]:
    decision = decide_blessing({}, BlessingRule())
    report = QuantizationReport(json.dumps(document).encode(), document, mixed or {})
    return (
        render_markdown([], "", decision, report),
        render_html([], "", decision, quantization=report),
    )


def test_hostile_names_stay_text_and_long_tensors_are_shortened():
    long_tensor = "model/" + "block/" * 30 + "c0/Conv2D"
    rows = [
        {"rank": 1, "tensor": long_tensor, "op": "CONV_2D", "layer": HOSTILE,
         "keras_layers": ["relu|x", HOSTILE], "rmse_over_scale": 5.8123, "rmse": 0.01,
         "mean_error": "nan", "max_abs_error": 0.2},
        {"rank": 2, "tensor": HOSTILE, "op": "ADD", "layer": "", "keras_layers": [],
         "rmse_over_scale": 1.0, "mean_error": 0.0, "max_abs_error": 0.1},
    ]  # fmt: skip
    document = {"variant": "ptq_int8", "samples": 8, "layers": rows}
    mixed = {"ptq_mixed": {"float_layers": [{"layer": HOSTILE, "tensor": HOSTILE}],
                           "float_layer_rule": "layers matching ['<b>']"}}  # fmt: skip
    md, page = _report(document, mixed)
    assert "<img" not in md and "<img" not in page and "<b>" not in page
    text = "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;|b"
    assert f"<td>{text} (+ relu|x)</td>" in page
    assert f'<td title="{text}">{text}</td>' in page  # a hostile tensor name, both places
    assert f'<td title="{long_tensor}">' in page  # the full name in the title
    assert f'<span title="{text}">{text}</span>' in page
    assert "layers matching [&#x27;&lt;b&gt;&#x27;]" in page
    first, second = _section_rows(
        md, "## Worst int8 layers (ptq_int8, RMSE in quantization steps, 8 calibration images)"
    )
    assert len(first) == len(second) == 7  # the "|" in names added no column
    assert first[1] == '&lt;img src=x onerror="window.__xss=1"&gt;\\|b (+ relu\\|x)'
    assert first[3] == "5.81" and first[4] == "n/a"  # not a number: not formatted
    assert len(first[6]) == 60 and "\u2026" in first[6] and first[6].endswith("block/c0/Conv2D")
    assert second[1] == "n/a" and second[6] == '&lt;img src=x onerror="window.__xss=1"&gt;\\|b'


def test_a_set_without_the_file_gives_no_section(tmp_path):
    tflite = write_tflite_artifact(tmp_path / "tflite")
    assert read_quantization_report(str(tflite)) is None
    decision = decide_blessing({}, BlessingRule())
    assert "Worst int8 layers" not in render_markdown([], "", decision)
    assert "Worst int8 layers" not in render_html([], "", decision)
    # a file that is not a JSON object is left out, not an error
    (tflite / LAYER_ERRORS_FILE).write_text("[1, 2]")
    assert read_quantization_report(str(tflite)) is None


def test_qat_decision_is_copied_and_reported_with_the_candidates_it_tried(tmp_path):
    from model_maker.core.evaluation import write_reports
    from model_maker.core.qat_decision import QATDecision, read_qat_decision, write_qat_decision

    tflite = write_tflite_artifact(tmp_path / "tflite")
    decision = QATDecision(
        "auto", True, "ptq_mixed", "QAT ran: ptq_int8 AP 40.00 vs keras_float 50.00 <x>",
        metric="AP", baseline_metric=0.5, ptq_metric=0.4, mixed_float_layers=10,
        candidates=(
            {"variant": "ptq_int8", "float_layers": None, "metric": 0.4, "blessed": False,
             "bytes": 1_500_000, "latency_ms": 2.25},
            {"variant": "qat (fake-quant)", "float_layers": None, "metric": 0.45,
             "blessed": False, "bytes": None, "latency_ms": None},
            {"variant": "ptq_mixed", "float_layers": 10, "metric": 0.495, "blessed": True,
             "bytes": 1_700_000, "latency_ms": 2.5},
        ),
        check_seconds=31.0, qat_seconds=80.0,
    )  # fmt: skip
    write_qat_decision(str(tflite), decision)
    report = read_quantization_report(str(tflite))
    assert report.qat_decision == decision and not report.document
    out = tmp_path / "evaluation"
    blessing = decide_blessing({}, BlessingRule())
    files = write_reports([], "", blessing, str(out), quantization=report)
    assert read_qat_decision(str(out)) == decision and "qat_decision.json" in files
    assert json.loads((out / "metrics.json").read_text())["qat_decision"]["candidate"] == (
        "ptq_mixed"
    )
    md = (out / "report.md").read_text()
    assert "QAT ran (80 s); candidate ptq_mixed; checks took 31 s." in md
    rows = _section_rows(md, "## QAT decision (qat.mode auto)")
    assert rows == [
        ["candidate", "float layers", "AP", "meets rule", "MB", "ms"],
        ["ptq_int8", "", "40.00", "no", "1.50", "2.25"],
        ["qat (fake-quant)", "", "45.00", "no", "n/a", "n/a"],
        ["ptq_mixed", "10", "49.50", "yes", "1.70", "2.50"],
    ]
    page = (out / "report.html").read_text()
    assert "keras_float 50.00 &lt;x&gt;" in page and "<x>" not in page
