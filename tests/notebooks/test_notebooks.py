"""The notebooks in notebooks/: committed without outputs, and executed for real.

Both run in a Jupyter kernel (nbclient) of this interpreter against the tiny
pipeline of tests/tiny_pipeline.py; the quick start runs that pipeline once
more (every component then comes from the TFX cache) and the inspection
notebook reads the ML Metadata store the runs left.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _execute(name: str, env: dict[str, str], monkeypatch):
    import nbclient
    import nbformat

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # The kernelspec starts "python": make it this interpreter.
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    notebook = nbformat.read(REPO / "notebooks" / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    return notebook


def _tagged(notebook, tag: str):
    cells = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, tag
    return cells[0]


def _text(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        for key in ("text/plain", "text/html"):
            if key in output.get("data", {}):
                parts.append(output["data"][key])
    return "\n".join(parts)


def _array(value):
    """A plotly figure's data array: a list, or a typed array {"dtype", "bdata": base64}."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def test_there_are_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["inspect_runs.ipynb", "quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def test_quickstart_runs_the_pipeline_and_shows_the_comparison(tiny_pipeline, monkeypatch):
    notebook = _execute(
        "quickstart.ipynb", {"QATFLOW_NOTEBOOK_CONFIG": str(tiny_pipeline.config)}, monkeypatch
    )
    latest = json.loads((tiny_pipeline.root / "latest_run.json").read_text())
    assert latest["run_id"] in _text(_tagged(notebook, "run"))
    table = _text(_tagged(notebook, "table"))
    for variant in ("keras_float", "float32", "ptq_int8", "qat_int8"):
        assert variant in table, table
    assert "AP vs float" in table
    plot = _tagged(notebook, "plot").outputs
    figures = [o["data"] for o in plot if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 1
    traces = figures[0]["application/vnd.plotly.v1+json"]["data"]
    # one point per TFLite file (the Keras model has no file size)
    assert sorted(t["name"] for t in traces) == ["float32", "ptq_int8", "qat_int8"]
    for trace in traces:
        sizes = _array(trace["x"])
        assert sizes.shape == (1,) and sizes[0] > 0, trace["x"]


def test_quickstart_shows_top1_for_a_classification_run(tiny_classification, monkeypatch):
    """The same notebook on the tiny classifier config: every component comes from the
    cache, and the table and the plot use top-1."""
    notebook = _execute(
        "quickstart.ipynb",
        {"QATFLOW_NOTEBOOK_CONFIG": str(tiny_classification.config)},
        monkeypatch,
    )
    table = _text(_tagged(notebook, "table"))
    assert "top1 vs float" in table and "macro_f1" in table and "AP50" not in table
    for variant in ("keras_float", "float32", "ptq_int8", "qat_int8"):
        assert variant in table, table
    plot = _tagged(notebook, "plot").outputs
    (figure,) = [o["data"] for o in plot if "application/vnd.plotly.v1+json" in o.get("data", {})]
    layout = figure["application/vnd.plotly.v1+json"]["layout"]
    assert "top1 vs size vs latency" in layout["title"]["text"]


def test_inspect_runs_lists_runs_executions_artifacts_and_lineage(tiny_pipeline, monkeypatch):
    notebook = _execute(
        "inspect_runs.ipynb", {"QATFLOW_NOTEBOOK_ROOT": str(tiny_pipeline.root)}, monkeypatch
    )
    runs = _text(_tagged(notebook, "runs"))
    assert "CACHED" in runs and "COMPLETE" in runs
    executions = _text(_tagged(notebook, "executions"))
    for component in ("DetectionExampleGen", "Trainer", "QATTrainer", "Evaluator", "Pusher"):
        assert component in executions, executions
    artifacts = _text(_tagged(notebook, "artifacts"))
    for kind in ("Examples", "Model", "ModelEvaluation", "PushedModel"):
        assert kind in artifacts, artifacts
    lineage = _text(_tagged(notebook, "lineage")).splitlines()
    # PushedModel <- Pusher, down to the Examples made by ExampleGen
    assert lineage[0].startswith("PushedModel") and "Pusher" in lineage[0]
    assert any(
        line.strip().startswith("Examples") and "DetectionExampleGen" in line for line in lineage
    ), lineage
    assert any("QATTrainer" in line for line in lineage), lineage
