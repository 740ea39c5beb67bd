"""The evaluation page's worst int8 layers (the evaluation's copy of layer_errors.json) and the
layers ptq_mixed kept float (metrics.json), for both tasks; hostile names stay text."""

from __future__ import annotations

import copy
import html
import json
import os
import re

import markupsafe
import pytest
from store_builder import RunSpec, build_runs

from dashboard.app import create_app
from model_maker.core.layer_errors import LAYER_ERRORS_FILE, LayerError, layer_errors_document
from model_maker.core.options import IMAGE_CLASSIFICATION
from model_maker.core.quantization_report import QuantizationReport

HOSTILE = '</td><script>window.__xss = 1</script><img src=x onerror="window.__xss=2">'
LONG = "efficientdet/" + "bifpn/" * 20 + "c3/Conv2D"


def _errors() -> list[LayerError]:
    """14 ops, worst first; rank 1 has a hostile Keras name, rank 2 a long fused tensor."""
    out = []
    for i in range(14):
        layer = HOSTILE if i == 0 else f"c{i}"
        tensor = LONG if i == 1 else f"model/relu{i}/Relu6;model/{layer}/Conv2D"
        out.append(
            LayerError(
                tensor=tensor, op="CONV_2D" if i % 2 else "ADD", layer=layer,
                keras_layers=(f"relu{i}", layer), rmse_over_scale=6.0 - 0.4 * i,
                rmse=0.01, mean_error=-0.00125 * i, max_abs_error=0.25 + i,
                scale=0.0065, zero_point=-128, num_elements=2048,
            )
        )  # fmt: skip
    return out


def _add_layer_errors(evaluation_uri: str) -> dict:
    """The Evaluator's outputs of a set with layer errors: the copy and metrics.json."""
    document = layer_errors_document(_errors(), variant="ptq_int8", samples=8, seconds=1.5)
    text = json.dumps(document, indent=1)
    with open(os.path.join(evaluation_uri, LAYER_ERRORS_FILE), "w", encoding="utf-8") as fh:
        fh.write(text)
    path = os.path.join(evaluation_uri, "metrics.json")
    with open(path, encoding="utf-8") as fh:
        metrics = json.load(fh)
    mixed = copy.deepcopy(metrics["variants"][-1])
    mixed.update(
        variant="ptq_mixed",
        float_layers=[{"layer": HOSTILE, "tensor": LONG, "op": "CONV_2D"},
                      {"layer": "c1", "tensor": "model/c1/Conv2D", "op": "CONV_2D"}],
        float_layer_rule="the 2 worst layers by rmse_over_scale",
    )  # fmt: skip
    metrics["variants"].append(mixed)
    report = QuantizationReport(text.encode(), document)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.add_summary(metrics), fh)
    return document


@pytest.fixture(scope="module")
def layer_root(tmp_path_factory):
    """A detection run and a classification run with layer errors, a detection run without."""
    root = tmp_path_factory.mktemp("dash-layers")
    specs = [RunSpec(), RunSpec(task=IMAGE_CLASSIFICATION), RunSpec()]
    runs = build_runs(str(root / "layers"), specs)
    documents = [_add_layer_errors(run.evaluation_uri) for run in runs[:2]]
    return create_app(str(root)).test_client(), runs, documents


def _page(client, run) -> str:
    response = client.get(f"/evaluation?store=layers&run={run.run_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cells (text, tags removed, entities decoded) of each row of a table."""
    table = re.search(rf'<table id="{table_id}" class="layer-errors">(.*?)</table>', page, re.S)
    assert table, f"no table {table_id}"
    rows = re.findall(r"<tr data-rank[^>]*>(.*?)</tr>", table.group(1), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r, re.S) for r in rows]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in row] for row in cells]


@pytest.mark.parametrize("index", [0, 1], ids=["detection", "classification"])
def test_evaluation_page_lists_the_ten_worst_layers_and_all_behind_details(layer_root, index):
    client, runs, documents = layer_root
    page = _page(client, runs[index])
    layers = documents[index]["layers"]
    worst = _table_rows(page, "worst-layers")
    assert [int(r[0]) for r in worst] == list(range(1, 11))
    assert [r[1].split(" (+")[0] for r in worst[1:]] == [f"c{i}" for i in range(1, 10)]
    assert worst[2][1] == "c2 (+ relu2)" and worst[2][2] == "ADD"
    assert [r[3] for r in worst] == [f"{row['rmse_over_scale']:.2f}" for row in layers[:10]]
    assert worst[3][4] == "-0.00375" and worst[3][5] == "3.25"
    assert worst[3][6] == "model/relu3/Relu6;model/c3/Conv2D"
    # a long tensor name: shortened in the cell, whole in the title
    assert len(worst[1][6]) == 60 and worst[1][6].endswith("\u2026")
    assert f'title="{LONG}"' in page
    assert '<details id="all-layers"><summary>All 14 quantized ops</summary>' in page
    assert [int(r[0]) for r in _table_rows(page, "all-layer-errors")] == list(range(1, 15))
    assert "8 calibration images" in page and 'href="/files/layers/Evaluator/' in page
    mixed = re.search(r'<p class="float-layers" data-variant="ptq_mixed">(.*?)</p>', page, re.S)
    assert mixed, "no ptq_mixed float layers"
    text = html.unescape(re.sub(r"<[^>]+>", "", mixed.group(1)))
    assert " ".join(text.split()) == (
        f"ptq_mixed keeps 2 layer(s) in float (the 2 worst layers by rmse_over_scale): "
        f"{' '.join(HOSTILE.split())}, c1."
    )


def test_hostile_layer_names_stay_text(layer_root):
    client, runs, _ = layer_root
    for run in runs[:2]:
        page = _page(client, run)
        assert "<script>window.__xss" not in page and "<img src=x" not in page
        assert str(markupsafe.escape(HOSTILE)) in page  # shown, as text
        (first, *_) = _table_rows(page, "worst-layers")
        assert first[1] == f"{HOSTILE} (+ relu0)"


def test_a_run_without_layer_errors_says_so(layer_root):
    client, runs, _ = layer_root
    page = _page(client, runs[2])
    assert 'id="no-layer-errors"' in page and "no layer errors in this run" in page
    assert 'id="worst-layers"' not in page and 'class="float-layers"' not in page
    assert 'id="variants"' in page  # the rest of the page is there
