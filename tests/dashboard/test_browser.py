"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

Opens the runs list, a run, its evaluation charts, its training curves and a
comparison, then a classification run's evaluation (its confusion matrix, a
variant picked, hostile class names); checks what plotly.js drew; saves screenshots under
``test-output/dashboard/`` (QATFLOW_TEST_OUTPUT overrides the folder).
"""

from __future__ import annotations

import os
import pathlib
import re
from urllib.parse import urlparse

import pytest
from conftest import XSS_CLASSES

REPO = pathlib.Path(__file__).resolve().parents[2]
OUTPUT = pathlib.Path(os.environ.get("QATFLOW_TEST_OUTPUT", REPO / "test-output")) / "dashboard"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser_page(small_server):
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on(
            "request",
            lambda req: (
                problems.append(f"off-host request: {req.url}")
                if urlparse(req.url).hostname not in ("127.0.0.1", None)
                else None
            ),
        )
        yield page, problems
        browser.close()


def _rendered(page, selector: str) -> None:
    page.wait_for_selector(f"{selector}[data-rendered] .main-svg", state="attached")


def test_runs_list_run_evaluation_training_and_compare(browser_page, small_server, small_root):
    page, problems = browser_page
    _, built = small_root

    page.goto(small_server.url + "/")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    assert rows.nth(1).locator("td.headline").inner_text() == "43.00"
    assert rows.nth(1).locator("td.blessing").inner_text().strip() == "not blessed"
    page.screenshot(path=str(OUTPUT / "runs.png"), full_page=True)

    # A run: the DAG drawn by plotly, one marker per execution.
    page.click(f"a:text-is('{built[1].run_id}')")
    _rendered(page, "#dag")
    assert page.locator("#dag .scatterlayer .point").count() == 6
    labels = page.locator("#dag .scatterlayer text").all_text_contents()
    assert "DetectionExampleGen" in labels and "Pusher" in labels
    assert page.locator("#executions tr[data-component='DetectionExampleGen'] td.cache")
    assert page.locator("#executions td.cache").first.inner_text() == "yes"
    page.screenshot(path=str(OUTPUT / "run.png"), full_page=True)

    # Its evaluation: table, AP vs size / latency, per-class AP, blessing.
    page.goto(f"{small_server.url}/evaluation?store=demo&run={built[0].run_id}")
    for chart in ("#chart-size", "#chart-latency", "#chart-classes"):
        _rendered(page, chart)
    assert page.locator("#chart-size .scatterlayer .point").count() == 3
    assert page.locator("#chart-classes .barlayer .point").count() == 9
    assert page.locator(
        "#variants tr[data-variant='qat_int8'] td[data-metric='AP']"
    ).inner_text() == ("41.60")
    assert "BLESSED" in page.locator("#blessing").inner_text()
    page.screenshot(path=str(OUTPUT / "evaluation.png"), full_page=True)

    # Training curves, fetched from the TensorBoard logs.
    page.click("#tab-training")
    page.wait_for_selector("#training[data-loaded='4']")
    for index in range(3):
        _rendered(page, f"#training-{index}")
    titles = page.locator("#training .chart").evaluate_all(
        "els => els.map(e => e.getAttribute('data-title'))"
    )
    assert titles == ["loss", "learning rate", "AP"]
    assert page.locator("#training-0 .scatterlayer .trace").count() == 2  # train, validation
    page.screenshot(path=str(OUTPUT / "training.png"), full_page=True)

    # Compare: pick A and B in the runs list.
    page.goto(small_server.url + "/")
    page.check(f"input[name='a'][value='demo|{built[0].run_id}']")
    page.check(f"input[name='b'][value='demo|{built[1].run_id}']")
    page.click("#compare-button")
    _rendered(page, "#chart-compare")
    changed = page.locator("#config-diff tr.changed td:first-child").all_inner_texts()
    assert changed == ["Trainer.options.train.epochs", "Trainer.options.train.learning_rate"]
    delta = page.locator("#metrics-diff tr[data-metric='AP'] td.delta[data-variant='qat_int8']")
    assert delta.inner_text() == "+1.40"
    assert re.search(r"Settings \(2 differ\)", page.content())
    page.screenshot(path=str(OUTPUT / "compare.png"), full_page=True)

    assert problems == []
    for name in ("runs", "run", "evaluation", "training", "compare"):
        assert (OUTPUT / f"{name}.png").stat().st_size > 10_000


def test_classification_confusion_matrix(browser_page, mixed_server, mixed_root):
    page, problems = browser_page
    _, built = mixed_root
    start = len(problems)

    # The runs list names the task and the headline metric.
    page.goto(mixed_server.url + "/")
    row = page.locator(f"#runs tr[data-run='{built[1].run_id}']")
    assert row.locator("td.task").inner_text() == "classification"
    assert row.locator("td.metric").inner_text() == "top-1"
    assert row.locator("td.headline").inner_text() == "92.81"

    page.goto(f"{mixed_server.url}/evaluation?store=mixed&run={built[1].run_id}")
    for chart in ("#chart-variants", "#chart-size", "#chart-latency", "#chart-classes"):
        _rendered(page, chart)
    assert page.locator("#chart-variants .barlayer .point").count() == 4
    assert page.locator("#chart-classes .barlayer .point").count() == 8

    def matrix() -> tuple[str, list[list[str]]]:
        table = page.locator("#confusion-matrix")
        rows = table.locator("tbody tr")
        cells = [rows.nth(i).locator("td.cell").all_inner_texts() for i in range(rows.count())]
        return table.get_attribute("data-variant"), cells

    assert matrix() == ("qat_int8", [["63", "7"], ["4", "79"]])
    assert page.locator("#confusion-matrix thead th.pred").all_inner_texts() == ["ants", "bees"]
    colours = page.locator("#confusion-matrix td.cell").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    assert colours[0] == "rgba(21, 101, 192, 0.81)" and colours[1] == "rgba(21, 101, 192, 0.09)"
    page.locator("#confusion-matrix").scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "classification.png"), full_page=True)

    # Picking another variant reloads the page with its matrix.
    with page.expect_navigation():
        page.select_option("#confusion-variant", "ptq_int8")
    assert "matrix=ptq_int8" in page.url
    assert matrix() == ("ptq_int8", [["60", "10"], ["8", "75"]])
    assert page.locator("#confusion-variant").input_value() == "ptq_int8"

    # Hostile class names are shown as text, in the table and in plotly's labels.
    page.goto(f"{mixed_server.url}/evaluation?store=mixed&run={built[2].run_id}")
    _rendered(page, "#chart-classes")
    assert matrix() == ("qat_int8", [["63", "7"], ["4", "79"]])
    assert page.locator("#confusion-matrix th.true").all_inner_texts() == list(XSS_CLASSES)
    ticks = page.locator("#chart-classes .xtick text").all_text_contents()
    assert ticks == list(XSS_CLASSES)
    page.locator("#confusion-matrix td.cell").first.hover()
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#confusion-matrix img, #per-class img, #per-class b").count() == 0

    assert problems[start:] == []
    assert (OUTPUT / "classification.png").stat().st_size > 10_000
