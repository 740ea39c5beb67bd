"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

Opens the runs list, a run, its evaluation charts, its training curves and a
comparison; checks what plotly.js drew; saves screenshots under
``test-output/dashboard/`` (QATFLOW_TEST_OUTPUT overrides the folder).
"""

from __future__ import annotations

import os
import pathlib
import re
from urllib.parse import urlparse

import pytest

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
    assert rows.nth(1).locator("td.ap").inner_text() == "43.00"
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
