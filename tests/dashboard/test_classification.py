"""Classification runs in the dashboard: rows, the evaluation page's numbers, the confusion
matrix, hostile class names. The numbers come from fixtures/classification_metrics.json
(ants/bees, 153 images; qat_int8 confusion matrix [[63, 7], [4, 79]])."""

from __future__ import annotations

import copy
import json
import re

import pytest
from conftest import XSS_CLASSES
from flask import render_template
from markupsafe import escape
from store_builder import CLASSIFICATION_METRICS

from dashboard import classification, store
from dashboard.app import create_app, evaluation_context


def _fixture() -> dict:
    with open(CLASSIFICATION_METRICS, encoding="utf-8") as fh:
        return json.load(fh)


def _figure(page: str, plot_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" data-plot="{plot_id}">(.*?)</script>', page, re.S
    )
    assert match, f"no figure {plot_id}"
    return json.loads(match.group(1))


def _table(page: str, table_id: str) -> str:
    match = re.search(rf'<table id="{table_id}"[^>]*>(.*?)</table>', page, re.S)
    assert match, f"no table {table_id}"
    return match.group(1)


def _cells(row: str) -> list[str]:
    """Text of the <td>s of a row, tags removed."""
    return [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    ]


def _variant_rows(page: str) -> dict[str, list[str]]:
    rows = re.findall(r'<tr data-variant="([^"]+)"[^>]*>(.*?)</tr>', _table(page, "variants"), re.S)
    return {name: _cells(row) for name, row in rows}


def _matrix(page: str) -> tuple[str, list[list[int]], list[list[str]]]:
    """(variant, counts, shares) of the confusion matrix on a page."""
    match = re.search(r'<table id="confusion-matrix"[^>]*data-variant="([^"]+)">', page)
    assert match, "no confusion matrix"
    body = _table(page, "confusion-matrix")
    counts, shares = [], []
    for row in re.findall(r'<tr data-true="\d+">(.*?)</tr>', body, re.S):
        cells = re.findall(
            r'<td class="num cell[^"]*"[^>]*data-share="([^"]+)"[^>]*>(\d+)</td>', row
        )
        shares.append([share for share, _ in cells])
        counts.append([int(count) for _, count in cells])
    return match.group(1), counts, shares


@pytest.fixture(scope="module")
def mixed(mixed_root):
    """(client, built runs): detection, classification, hostile names, failed classification."""
    root, built = mixed_root
    return create_app(str(root)).test_client(), built


def _page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def test_rows_carry_the_task_and_the_headline_metric(mixed_root):
    root, built = mixed_root
    [ref] = store.find_stores(str(root))
    reader = store.MetadataReader(ref)
    failed, hostile, classifier, detector = reader.runs()
    assert (detector.task, detector.metric) == ("object_detection", "AP")
    assert detector.candidate_value == pytest.approx(0.42 - 0.004)
    assert (classifier.task, classifier.metric, classifier.candidate) == (
        "image_classification", "top1", "qat_int8",
    )  # fmt: skip
    assert classifier.candidate_value == pytest.approx(142 / 153)
    assert classifier.blessed is True
    assert hostile.candidate_value == pytest.approx(142 / 153)
    # No metrics.json: the task comes from the Trainer's options, the value is unknown.
    assert (failed.task, failed.metric, failed.candidate_value) == (
        "image_classification", "top1", None,
    )  # fmt: skip
    assert failed.blessed is None
    detail = reader.run(built[1].run_id)
    assert detail.metrics == _fixture()
    assert detail.blessing.blessed and detail.blessing.details["metric"] == "top1"


def test_task_and_headline_helpers():
    assert store.task_of({}) == "object_detection"
    assert store.task_of({"task": "object_detection"}) == "object_detection"
    assert store.task_of({"task": "image_classification"}) == "image_classification"
    assert store.headline(_fixture()) == (
        "image_classification", "top1", "qat_int8", pytest.approx(142 / 153),
    )  # fmt: skip
    assert store.headline({"candidate": "x"}) == ("object_detection", "AP", "x", None)


def test_runs_list_shows_task_and_headline(mixed):
    client, built = mixed
    page = _page(client, "/")
    rows = dict(re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', _table(page, "runs"), re.S))
    assert list(rows) == [b.run_id for b in reversed(built)]

    def shown(run: int) -> tuple[str, str, str]:
        row = rows[built[run].run_id]
        task = re.search(r'<td class="task"[^>]*>(.*?)</td>', row).group(1)
        metric = re.search(r'<td class="metric">(.*?)</td>', row).group(1)
        value = re.search(r'<td class="num headline" data-metric="\w+">(.*?)</td>', row).group(1)
        return task, metric, value

    assert shown(0) == ("detection", "AP", "41.60")
    assert shown(1) == ("classification", "top-1", "92.81")
    assert shown(2) == ("classification", "top-1", "92.81")
    assert shown(3) == ("classification", "top-1", "n/a")
    assert 'data-task="image_classification"' in rows[built[1].run_id]


def test_comparison_table_and_top1_charts(mixed):
    client, built = mixed
    page = _page(client, f"/evaluation?store=mixed&run={built[1].run_id}")
    header = re.search(r"<thead>(.*?)</thead>", _table(page, "variants"), re.S).group(1)
    labels = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", header)]
    # No top-5 column: two classes.
    assert labels == [
        "variant", "size KB", "latency ms (median / p90)", "top-1", "macro-F1", "top-1 vs float",
        "images",
    ]  # fmt: skip
    rows = _variant_rows(page)
    assert list(rows) == ["keras_float", "float32", "ptq_int8", "qat_int8"]
    assert rows["keras_float"] == ["keras_float", "n/a", "n/a", "93.46", "93.40", "+0.00", "153"]
    assert rows["float32"] == [
        "float32",
        "8769.8",
        "31.42 / 33.93",
        "93.46",
        "93.40",
        "+0.00",
        "153",
    ]
    assert rows["ptq_int8"] == [
        "ptq_int8",
        "2551.2",
        "12.07 / 13.04",
        "88.24",
        "88.12",
        "-5.23",
        "153",
    ]
    assert rows["qat_int8"] == [
        "qat_int8",
        "2568.5",
        "12.31 / 13.29",
        "92.81",
        "92.73",
        "-0.65",
        "153",
    ]
    assert '<tr data-variant="qat_int8" class="candidate">' in page
    assert "Rule: top1 of qat_int8 &ge; top1 of\n  keras_float &minus; 1.0 points" in page
    assert "(threshold 92.46)" in page and "drop 0.65 points, within the allowed 1" in page

    bars = _figure(page, "chart-variants")
    [trace] = bars["data"]
    assert trace["x"] == ["keras_float", "float32", "ptq_int8", "qat_int8"]
    assert trace["y"] == pytest.approx([93.464, 93.464, 88.235, 92.810])
    assert trace["marker"]["color"] == ["#1565c0", "#1565c0", "#1565c0", "#c62828"]
    assert bars["layout"]["title"]["text"] == (
        "top-1 per variant (dashed: blessing threshold 92.46)"
    )
    [threshold] = bars["layout"]["shapes"]
    assert threshold["y0"] == threshold["y1"] == pytest.approx(92.464)
    size = _figure(page, "chart-size")
    assert size["data"][0]["x"] == [8.98, 2.612, 2.63]  # MB; keras_float has no file
    assert size["data"][0]["y"] == pytest.approx([93.464, 88.235, 92.810])
    assert size["layout"]["title"]["text"] == "top-1 vs model size"
    latency = _figure(page, "chart-latency")
    assert latency["data"][0]["x"] == [31.42, 12.07, 12.31]


def test_per_class_accuracy(mixed):
    client, built = mixed
    page = _page(client, f"/evaluation?store=mixed&run={built[1].run_id}")
    rows = re.findall(r'<tr data-class="\d+">(.*?)</tr>', _table(page, "per-class"), re.S)
    assert [_cells(r) for r in rows] == [
        ["ants", "70", "91.43", "91.43", "85.71", "90.00", "-1.43"],
        ["bees", "83", "95.18", "95.18", "90.36", "95.18", "+0.00"],
    ]
    assert '<th class="num">qat_int8 vs keras_float</th>' in page
    classes = _figure(page, "chart-classes")
    assert [t["name"] for t in classes["data"]] == [
        "keras_float",
        "float32",
        "ptq_int8",
        "qat_int8",
    ]
    assert classes["data"][3]["x"] == ["ants", "bees"]
    assert classes["data"][3]["y"] == pytest.approx([90.0, 95.181], abs=1e-3)
    assert classes["layout"]["title"]["text"] == "accuracy per class"


def test_confusion_matrix_of_the_candidate_and_of_a_picked_variant(mixed):
    client, built = mixed
    url = f"/evaluation?store=mixed&run={built[1].run_id}"
    page = _page(client, url)
    variant, counts, shares = _matrix(page)
    assert variant == "qat_int8"
    assert counts == [[63, 7], [4, 79]]
    assert shares == [["0.9000", "0.1000"], ["0.0482", "0.9518"]]
    body = _table(page, "confusion-matrix")
    assert [c.strip() for c in re.findall(r'<td class="num total">(\d+)</td>', body)] == [
        "70",
        "83",
    ]
    assert re.findall(r'<th class="true" scope="row">(.*?)</th>', body) == ["ants", "bees"]
    assert re.findall(r'<th class="pred"[^>]*><span>(.*?)</span>', body) == ["ants", "bees"]
    footer = re.search(r"<tfoot>(.*?)</tfoot>", body, re.S).group(1)
    assert _cells(footer) == ["67", "86", "153", ""]
    assert "qat_int8: 142 of 153 images correct." in page
    assert 'title="true ants, predicted bees: 7 of 70 (10.0%)"' in page
    # The heat map follows the row share: the 63 of 70 cell is darker than the 7 of 70.
    alphas = [float(a) for a in re.findall(r"rgba\(21, 101, 192, ([\d.]+)\)", body)]
    assert alphas == pytest.approx([0.81, 0.09, 0.0434, 0.8566], abs=1e-3)
    assert '<option value="qat_int8" selected>' in page

    variant, counts, _ = _matrix(_page(client, url + "&matrix=ptq_int8"))
    assert (variant, counts) == ("ptq_int8", [[60, 10], [8, 75]])
    variant, counts, _ = _matrix(_page(client, url + "&matrix=no-such-variant"))
    assert (variant, counts) == ("qat_int8", [[63, 7], [4, 79]])


def test_hostile_class_names_are_escaped_everywhere(mixed):
    client, built = mixed
    hostile = built[2].run_id
    pages = {
        "evaluation": _page(client, f"/evaluation?store=mixed&run={hostile}"),
        "matrix": _page(client, f"/evaluation?store=mixed&run={hostile}&matrix=float32"),
        "compare": _page(client, f"/compare?a=mixed|{built[1].run_id}&b=mixed|{hostile}"),
        "runs": _page(client, "/"),
    }
    for name, page in pages.items():
        for raw in ("<script>window", "<img src=x", "<b>bold</b>", '"><img'):
            assert raw not in page, (name, raw)
    page = pages["evaluation"]
    escaped = [str(escape(c)) for c in XSS_CLASSES]
    # HTML text: the matrix axes and the per-class table.
    assert re.findall(r'<th class="true" scope="row">(.*?)</th>', page) == escaped
    assert re.findall(r'<td class="class-name">(.*?)</td>', page) == escaped
    # Attributes: the title of every cell.
    first, second = escaped
    assert f'title="true {first}, predicted {second}: 7 of 70 (10.0%)"' in page
    # The figures' JSON cannot close its <script>, and plotly gets the names HTML-escaped
    # (it reads some tags in labels; it shows entities as text).
    for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S):
        assert "<" not in block
    classes = _figure(page, "chart-classes")
    assert classes["data"][0]["x"] == [
        "&lt;/script&gt;&lt;script&gt;window.__xss = 1&lt;/script&gt;"
        '&lt;img src=x onerror="window.__xss = 2"&gt;',
        '"&gt;&lt;img src=x onerror=window.__xss=3&gt; &amp; &lt;b&gt;bold&lt;/b&gt;',
    ]
    # The numbers are those of the plain run.
    assert _matrix(page)[1] == [[63, 7], [4, 79]]
    assert "&lt;/script&gt;&lt;script&gt;window.__xss = 1&lt;/script&gt;" in pages["compare"]


def test_compare_classification_runs(mixed):
    client, built = mixed
    page = _page(client, f"/compare?a=mixed|{built[1].run_id}&b=mixed|{built[2].run_id}")
    rows = dict(re.findall(r'<tr data-metric="([^"]+)">(.*?)</tr>', page, re.S))
    assert {"top1", "macro_f1", "acc_/ants", "size KB", "latency ms"} <= set(rows)
    assert "top5" not in rows and "AP" not in rows
    assert _cells(rows["top1"])[-3:] == ["92.81", "92.81", "+0.00"]
    assert _cells(rows["acc_/ants"])[-3:] == ["90.00", "n/a", ""]  # B names its classes otherwise
    figure = _figure(page, "chart-compare")
    assert figure["layout"]["title"]["text"] == "top-1 per variant"
    assert [t["y"] for t in figure["data"]][0] == pytest.approx([93.464, 93.464, 88.235, 92.81])
    assert "qat_int8 top-1 92.81" in page
    # A detection run against a classification run: both metric families, no error.
    mixed_page = _page(client, f"/compare?a=mixed|{built[0].run_id}&b=mixed|{built[1].run_id}")
    metrics = set(re.findall(r'<tr data-metric="([^"]+)">', mixed_page))
    assert {"AP", "AP_/circle", "top1", "acc_/bees"} <= metrics


def test_detection_and_failed_runs_of_the_mixed_store(mixed):
    client, built = mixed
    detection = _page(client, f"/evaluation?store=mixed&run={built[0].run_id}")
    assert '<table id="variants">' in detection and 'id="confusion' not in detection
    assert '<td class="num" data-metric="AP">41.60</td>' in detection
    failed = _page(client, f"/evaluation?store=mixed&run={built[3].run_id}")
    assert 'id="no-evaluation"' in failed and 'id="confusion' not in failed


def _detail(metrics: dict) -> store.RunDetail:
    row = store.RunRow(
        store="s", pipeline="p", run_id="r", context_id=1, started=None,
        status="complete", duration_s=None,
    )  # fmt: skip
    return store.RunDetail(row=row, executions=[], edges=[], metrics=metrics)


def test_top5_column_and_a_malformed_matrix_render(tmp_path):
    doc = copy.deepcopy(_fixture())
    top5 = {"keras_float": 1.0, "float32": 1.0, "ptq_int8": 0.987, "qat_int8": 0.993}
    for entry in doc["variants"]:
        entry["metrics"]["top5"] = top5[entry["variant"]]
    doc["variants"][0].pop("confusion_matrix")  # keras_float: none
    doc["variants"][2]["confusion_matrix"] = [[60, 10], [8, 75], [1, 1]]  # ptq_int8: 3 x 2
    app = create_app(str(tmp_path))
    with app.test_request_context():
        page = render_template("evaluation.html", **evaluation_context(_detail(doc)))
        broken = render_template("evaluation.html", **evaluation_context(_detail(doc), "ptq_int8"))
    rows = _variant_rows(page)
    assert rows["qat_int8"][3:7] == ["92.81", "99.30", "92.73", "-0.65"]
    assert rows["ptq_int8"][4] == "98.70"
    assert '<th class="num">top-5</th>' in page
    options = re.findall(r'<option value="([^"]+)"', page)
    assert options == ["float32", "ptq_int8", "qat_int8"]
    assert _matrix(page)[1] == [[63, 7], [4, 79]]
    assert 'id="confusion-matrix"' not in broken
    assert re.search(
        r'id="confusion-error">ptq_int8: the confusion matrix is not 2 x 2 .*got 3 rows', broken
    )


def test_confusion_matrix_cells_and_errors():
    matrix = classification.confusion_matrix("v", [[0, 0], [3, 1]], ["a", "b"])
    assert matrix.error == "" and matrix.totals == [0, 4]
    assert [[c.count for c in row] for row in matrix.rows] == [[0, 0], [3, 1]]
    assert [[c.share for c in row] for row in matrix.rows] == [[0.0, 0.0], [0.75, 0.25]]
    assert matrix.predicted_totals == [3, 1] and (matrix.correct, matrix.images) == (1, 4)
    assert matrix.rows[1][0].style.endswith("rgba(21, 101, 192, 0.675); color: #fff")
    assert matrix.rows[1][1].style.endswith("rgba(21, 101, 192, 0.225); color: #1f2933")
    for bad, message in (
        (None, "no confusion matrix"),
        ([[1, 2]], "not 2 x 2"),
        ([[1, 2], [3]], "not 2 x 2"),
        ("[[1, 2], [3, 4]]", "no confusion matrix"),
        ([[1, -1], [0, 1]], "not counts"),
        ([[1.5, 0], [0, 1]], "not counts"),
        ([[True, 0], [0, 1]], "not counts"),
        ([[float("inf"), 0], [0, 1]], "not counts"),
    ):
        found = classification.confusion_matrix("v", bad, ["a", "b"])
        assert message in found.error and found.rows == [], bad


def test_class_names_and_view_defaults():
    doc = _fixture()
    assert classification.class_names(doc) == ["ants", "bees"]
    no_list = {k: v for k, v in doc.items() if k != "classes"}
    assert classification.class_names(no_list) == ["ants", "bees"]  # from the acc_/ keys
    bare = {"variants": [{"variant": "v", "metrics": {"top1": 0.5}, "confusion_matrix": [[1]]}]}
    assert classification.class_names(bare) == ["class 0"]
    view = classification.view(doc)
    assert view.selected == "qat_int8" and view.matrix.variant == "qat_int8"
    assert view.summary == [("top1", "top-1"), ("macro_f1", "macro-F1")]
    assert [p["images"] for p in view.per_class] == [70, 83]
    assert view.per_class[0]["delta"] == pytest.approx(0.9 - 64 / 70)
    no_candidate = dict(doc, candidate="float16")
    assert classification.view(no_candidate).selected == "keras_float"
    assert classification.view(no_candidate, "ptq_int8").selected == "ptq_int8"
