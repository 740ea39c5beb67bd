"""The dashboard in real headless Chromium (Debian's package, driven by Playwright).

Opens the runs list, a run, its evaluation charts, its training curves and a
comparison, then a classification run's evaluation (its confusion matrix, a
variant picked, hostile class names), then the gallery of issue 18 (boxes drawn over
the thumbnails, the score slider, variant toggles, the full view, hostile names),
precision-recall curves, QAT curves beside the float ones and a classifier's
misclassified images; checks what plotly.js and gallery.js drew; saves screenshots under
``test-output/dashboard/`` (QATFLOW_TEST_OUTPUT overrides the folder).
"""

from __future__ import annotations

import os
import pathlib
import re
from urllib.parse import urlparse

import pytest
from conftest import XSS_CLASSES, XSS_FILE

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


# --- issue 18: gallery, PR curves, QAT curves, misclassified images --------------------------

#: Count of the boxes of an overlay that are shown (their <g> is not display:none).
_SHOWN = """(els) => els.filter(e => getComputedStyle(e.parentNode).display !== 'none').length"""


def _shown(page, selector: str) -> int:
    return page.locator(selector).evaluate_all(_SHOWN)


def _expected(doc: dict, images: list, threshold: float, variants: list[str]) -> int:
    """Detections of ``variants`` on ``images`` with score >= threshold (what the slider keeps)."""
    return sum(
        1
        for image in images
        for v in variants
        for box in doc["detections"][v][str(image["id"])]
        if box[4] >= threshold
    )


def _set_threshold(page, value: str) -> None:
    """Moves the slider with the keyboard (Home, then one step of 0.01 per ArrowRight)."""
    page.focus("#score-threshold")
    page.keyboard.press("Home")
    for _ in range(round(float(value) * 100)):
        page.keyboard.press("ArrowRight")
    assert page.locator("#score-value").inner_text() == value


def _pixels(png: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).convert("RGB")


def test_detection_gallery_boxes_slider_toggles_and_full_view(
    browser_page, gallery_server, gallery_root
):
    from PIL import ImageChops

    page, problems = browser_page
    start = len(problems)
    _, built = gallery_root
    run = built[0]
    doc = run.gallery
    variants = ["float32", "ptq_int8", "qat_int8"]
    images = doc["images"]

    page.goto(f"{gallery_server.url}/gallery?store=gallery&run={run.run_id}")
    page.wait_for_selector("#gallery[data-drawn]")
    # Every image of detections.json, in its order, with its boxes drawn as SVG rects.
    cards = page.locator("#gallery figure.card")
    assert cards.evaluate_all("els => els.map(e => e.dataset.image)") == [
        str(im["id"]) for im in images
    ]
    total = sum(len(doc["detections"][v][str(im["id"])]) for im in images for v in variants)
    assert page.locator("#gallery").get_attribute("data-drawn") == str(total)
    assert page.locator("#gallery rect[data-variant][data-score]").count() == total
    truth = sum(len(im["ground_truth"]) for im in images)
    assert page.locator("#gallery rect[data-variant='ground_truth']").count() == truth
    first = page.locator(f"#gallery svg[data-image='{images[0]['id']}']")
    scores = first.locator("rect[data-variant='ptq_int8']").evaluate_all(
        "els => els.map(e => Number(e.getAttribute('data-score')))"
    )
    assert scores == [b[4] for b in doc["detections"]["ptq_int8"][str(images[0]["id"])]]
    labels = first.locator("text").all_text_contents()
    assert {"circle", "square", "triangle"} & {label.split(" ")[0] for label in labels}
    assert any(label.endswith(f"{scores[0]:.2f}") for label in labels)
    # The difference numbers under each image.
    diff = cards.first.locator(".diff[data-variant='ptq_int8'] strong").inner_text()
    assert diff == f"{images[0]['difference']['ptq_int8']:.2f}"

    # The slider filters the boxes in the browser: 0.30 by default, then 0.80.
    assert _shown(page, "#gallery rect[data-score]") == _expected(doc, images, 0.3, variants)
    _set_threshold(page, "0.80")
    high = _expected(doc, images, 0.8, variants)
    assert 0 < high < _expected(doc, images, 0.3, variants)
    assert _shown(page, "#gallery rect[data-score]") == high
    assert page.locator("#visible-boxes").inner_text() == str(high)
    assert _shown(page, "#gallery rect[data-variant='ground_truth']") == truth  # never filtered

    # A variant toggle hides that variant's boxes only.
    page.uncheck("input.variant-toggle[value='ptq_int8']")
    assert _shown(page, "#gallery rect[data-variant='ptq_int8']") == 0
    assert _shown(page, "#gallery rect[data-score]") == _expected(
        doc, images, 0.8, ["float32", "qat_int8"]
    )
    page.check("input.variant-toggle[value='ptq_int8']")
    assert _shown(page, "#gallery rect[data-variant='ptq_int8']") == _expected(
        doc, images, 0.8, ["ptq_int8"]
    )

    # Pixels: the first thumbnail is a picture (not one colour), and the boxes change the
    # pixels where a box is drawn.
    _set_threshold(page, "0.00")
    frame = cards.first.locator(".frame")
    page.wait_for_function(
        "() => { const i = document.querySelector('#gallery .card img'); "
        "return i && i.complete && i.naturalWidth > 0; }"
    )
    with_boxes = _pixels(frame.screenshot(path=str(OUTPUT / "gallery-card.png")))
    assert len(with_boxes.getcolors(maxcolors=1_000_000)) > 20
    for toggle in page.locator("input.variant-toggle").all():
        toggle.uncheck()
    assert _shown(page, "#gallery svg rect") == 0
    bare = _pixels(frame.screenshot())
    box = frame.bounding_box()
    rect = first.locator("rect[data-variant='ground_truth']").first.bounding_box()
    left, top = int(rect["x"] - box["x"]), int(rect["y"] - box["y"])
    width, height = int(rect["width"]), int(rect["height"])
    # The rect's left edge band (its stroke), inside the frame.
    band = (max(left - 2, 0), max(top, 0), left + 3, min(top + height, bare.height))
    changed = ImageChops.difference(with_boxes.crop(band), bare.crop(band)).getbbox()
    assert changed is not None, "no pixel changed where the ground-truth box is drawn"
    assert width > 5 and height > 5
    for toggle in page.locator("input.variant-toggle").all():
        toggle.check()
    _set_threshold(page, "0.50")
    page.screenshot(path=str(OUTPUT / "gallery.png"), full_page=True)

    # One click: the full view, one panel per variant, the slider's value carried over.
    with page.expect_navigation():
        cards.nth(1).locator("a.frame").click()
    assert f"image={images[1]['id']}" in page.url and "threshold=0.50" in page.url
    page.wait_for_selector("#panels[data-drawn]")
    panels = page.locator("#panels figure.panel")
    assert panels.evaluate_all("els => els.map(e => e.dataset.variant)") == variants
    for index, variant in enumerate(variants):
        panel = panels.nth(index)
        drawn = panel.locator("rect[data-score]").evaluate_all(
            "els => [...new Set(els.map(e => e.dataset.variant))]"
        )
        assert drawn in ([variant], [])
        assert _shown(page, f"#panels figure.panel[data-variant='{variant}'] rect[data-score]") == (
            _expected(doc, [images[1]], 0.5, [variant])
        )
        assert panel.locator("rect[data-variant='ground_truth']").count() == len(
            images[1]["ground_truth"]
        )
    assert page.locator("#score-threshold").input_value() == "0.5"
    page.screenshot(path=str(OUTPUT / "gallery-image.png"), full_page=True)

    assert problems[start:] == []
    assert (OUTPUT / "gallery.png").stat().st_size > 10_000


def test_gallery_hostile_names_stay_text(browser_page, gallery_server, gallery_root):
    page, problems = browser_page
    start = len(problems)
    _, built = gallery_root
    run = built[1]
    page.goto(f"{gallery_server.url}/gallery?store=gallery&run={run.run_id}")
    page.wait_for_selector("#gallery[data-drawn]")
    names = page.locator("#gallery .file").all_inner_texts()
    assert sorted(names) == [f"{XSS_FILE}img_{i:03d}.jpg" for i in (1, 2, 3)]
    labels = {t.rsplit(" ", 1)[0] for t in page.locator("#gallery svg text").all_text_contents()}
    assert set(XSS_CLASSES) & labels
    page.locator("#gallery .frame").first.hover()
    page.goto(f"{gallery_server.url}/gallery/image?store=gallery&run={run.run_id}&image=1")
    page.wait_for_selector("#panels[data-drawn]")
    assert page.locator("#image-name").inner_text() == f"{XSS_FILE}img_001.jpg"
    page.goto(f"{gallery_server.url}/gallery?store=gallery&run={built[3].run_id}")
    assert set(page.locator("#misclassified .true-label").all_inner_texts()) <= set(XSS_CLASSES)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img[src='x'], main svg[onload], main b").count() == 0
    assert problems[start:] == []


def test_pr_curves_and_qat_training_curves(browser_page, gallery_server, gallery_root):
    page, problems = browser_page
    start = len(problems)
    _, built = gallery_root
    run = built[0]
    page.goto(f"{gallery_server.url}/evaluation?store=gallery&run={run.run_id}")
    for chart in ("#chart-pr-iou50", "#chart-pr-mean"):
        _rendered(page, chart)
        assert page.locator(f"{chart} .scatterlayer .trace").count() == 3  # one per variant
    legend = page.locator("#chart-pr-iou50 .legendtext").all_text_contents()
    assert legend == ["float32", "ptq_int8", "qat_int8"]
    page.locator("#pr-curves").scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "pr-curves.png"), full_page=True)
    with page.expect_navigation():
        page.select_option("#pr-class", "square")
    assert "pr_class=square" in page.url
    _rendered(page, "#chart-pr-iou50")
    assert page.locator("#chart-pr-iou50 .scatterlayer .trace").count() == 3
    assert "square" in page.locator("#chart-pr-iou50 .gtitle").text_content()

    page.click("#tab-training")
    page.wait_for_selector("#training[data-loaded='8']")
    for index in range(3):
        _rendered(page, f"#training-{index}")
    assert page.locator("#training .chart.wide").count() == 3  # float and QAT columns
    assert page.locator("#training-0 .scatterlayer .trace").count() == 4
    titles = page.locator("#training-0 .annotation-text").all_text_contents()
    assert titles == ["float (Trainer)", "QAT (QATTrainer)"]
    assert page.locator("#no-qat-logs").count() == 0
    page.screenshot(path=str(OUTPUT / "training-qat.png"), full_page=True)
    assert problems[start:] == []


def test_misclassified_images_gallery(browser_page, gallery_server, gallery_root):
    page, problems = browser_page
    start = len(problems)
    _, built = gallery_root
    run = built[2]
    doc = run.gallery
    page.goto(f"{gallery_server.url}/gallery?store=gallery&run={run.run_id}")

    def expected(variant: str) -> set[tuple[str, str, str]]:
        return {
            (im["file_name"], doc["classes"][im["label"]], doc["classes"][p[0]])
            for im, p in zip(doc["images"], doc["predictions"][variant], strict=True)
            if p[0] != im["label"]
        }

    def shown() -> set[tuple[str, str, str]]:
        cards = page.locator("#misclassified figure.card")
        return {
            (
                cards.nth(i).locator(".file").inner_text(),
                cards.nth(i).locator(".true-label").inner_text(),
                cards.nth(i).locator(".predicted-label").inner_text(),
            )
            for i in range(cards.count())
        }

    assert page.locator("#misclassified").get_attribute("data-variant") == "qat_int8"
    assert shown() == expected("qat_int8") and len(expected("qat_int8")) == 11
    page.wait_for_function(
        "() => [...document.querySelectorAll('#misclassified img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(OUTPUT / "misclassified.png"), full_page=True)
    with page.expect_navigation():
        page.select_option("#gallery-variant", "ptq_int8")
    assert "variant=ptq_int8" in page.url
    assert shown() == expected("ptq_int8") and len(expected("ptq_int8")) == 18
    assert problems[start:] == []
