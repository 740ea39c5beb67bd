"""Issue 18 in the Flask app: the detection gallery (boxes of every variant, most different
first, full view), precision-recall curves, QAT training curves beside the float ones,
the misclassified-images gallery of a classifier, older runs without these files, hostile
names, and thumbnails served only out of the run's own evaluation artifact.

The gallery store's files are written by gallery_builder exactly as contract 18 says
(/tmp/notes/contract18.md) until the Evaluator writes them itself.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import re
import urllib.parse

import pytest
from conftest import XSS_CLASSES, XSS_FILE
from gallery_builder import DIFF_THRESHOLD, GallerySpec, difference
from markupsafe import escape
from store_builder import QAT_EPOCHS, RunSpec, build_runs, training_scalars

from dashboard import gallery, pr_curves, store
from dashboard.app import DashboardState, create_app, pr_context, qat_note


@pytest.fixture(scope="module")
def client(gallery_root):
    return create_app(str(gallery_root[0])).test_client()


def _page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, url
    return response.get_data(as_text=True)


def _figure(page: str, plot_id: str) -> dict:
    match = re.search(
        rf'<script type="application/json" data-plot="{plot_id}">(.*?)</script>', page, re.S
    )
    assert match, f"no figure {plot_id}"
    return json.loads(match.group(1))


def _data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', page)
    assert match, "no gallery data"
    return json.loads(match.group(1))


def _cards(page: str) -> list[str]:
    return re.findall(r'<figure class="card" data-image="(\d+)"', page)


# --- detection gallery -------------------------------------------------------------------


def test_gallery_lists_images_as_detections_json_orders_them(client, gallery_root):
    _, built = gallery_root
    run = built[0]
    doc = run.gallery
    page = _page(client, f"/gallery?store=gallery&run={run.run_id}")
    ids = [str(im["id"]) for im in doc["images"]]
    assert _cards(page) == ids
    # The order is the contract's: max difference over the int8 variants, descending.
    maxima = [max(im["difference"].values()) for im in doc["images"]]
    assert maxima == sorted(maxima, reverse=True) and maxima[0] > maxima[-1]
    # Difference numbers shown per variant.
    first = doc["images"][0]
    card = page.split(f'data-image="{first["id"]}"', 1)[1].split("</figure>", 1)[0]
    for variant, value in first["difference"].items():
        assert f'<span class="diff" data-variant="{variant}">{variant} <strong>{value:.2f}' in card
    # Thumbnails come from the thumbnail route; images without one say so.
    with_thumb = [im for im in doc["images"] if im["thumbnail"]]
    assert len(with_thumb) == GallerySpec().thumbnails
    assert page.count('src="/gallery/thumbnail?') == len(with_thumb)
    assert f"path={with_thumb[0]['thumbnail']}" in page
    assert page.count('<span class="no-thumb">no thumbnail</span>') == len(doc["images"]) - len(
        with_thumb
    )
    # One SVG overlay per image, its viewBox the original size (boxes are in those pixels).
    overlay = f'<svg class="overlay" data-image="{first["id"]}" viewBox="0 0 {first["width"]:.1f} '
    assert overlay in page
    # Controls: ground truth and every variant, the slider at the contract's diff_threshold.
    toggles = re.findall(r'class="variant-toggle" value="([^"]+)" checked', page)
    assert toggles == ["ground_truth", "float32", "ptq_int8", "qat_int8"]
    assert 'id="score-threshold" min="0" max="1" step="0.01"\n    value="0.30"' in page
    # The boxes the browser draws are exactly the document's.
    data = _data(page)
    assert [v["name"] for v in data["variants"]] == ["float32", "ptq_int8", "qat_int8"]
    assert data["categories"] == {"1": "circle", "2": "square", "3": "triangle"}
    for image in doc["images"]:
        shown = data["images"][str(image["id"])]
        assert shown["gt"] == image["ground_truth"]
        assert (shown["w"], shown["h"]) == (image["width"], image["height"])
        for variant in data["variants"]:
            name = variant["name"]
            assert shown["boxes"][name] == doc["detections"][name][str(image["id"])]
    assert 'id="gallery-order"' in page and "the most different from float32 first" in page
    assert 'href="/gallery?store=gallery&amp;run=' in page  # the run header's tab


def test_fixture_differences_follow_the_contract():
    boxes = [[0, 0, 10, 10, 0.9, 1], [50, 50, 10, 10, 0.8, 2], [0, 0, 10, 10, 0.2, 1]]
    assert difference(boxes, boxes, DIFF_THRESHOLD) == 0.0
    assert difference([], [], DIFF_THRESHOLD) == 0.0
    moved = [[1, 1, 10, 10, 0.9, 1], [50, 50, 10, 10, 0.8, 3]]  # second: other class
    assert difference(moved, boxes, DIFF_THRESHOLD) == pytest.approx(0.5)
    assert difference([], boxes, DIFF_THRESHOLD) == 1.0


def test_gallery_pages(gallery_root, monkeypatch):
    root, built = gallery_root
    monkeypatch.setattr(gallery, "PAGE_SIZE", 3)
    page_size = 3
    client = create_app(str(root)).test_client()
    ids = [str(im["id"]) for im in built[0].gallery["images"]]
    url = f"/gallery?store=gallery&run={built[0].run_id}"
    pages = [_page(client, f"{url}&page={n}") for n in (1, 2, 3)]
    assert [_cards(p) for p in pages] == [ids[i : i + page_size] for i in (0, 3, 6)]
    assert "page 2 of 3 (images 4&ndash;6 of 8)" in pages[1]
    assert _cards(_page(client, f"{url}&page=99")) == ids[6:]  # clamped
    assert set(_data(pages[1])["images"]) == set(ids[3:6])  # only this page's boxes
    # The full view's "back" link leads to the page holding the image.
    view = _page(client, f"/gallery/image?store=gallery&run={built[0].run_id}&image={ids[4]}")
    assert "page=2" in re.search(r'<a data-keep-settings href="([^"]+)" id="back">', view).group(1)


def test_full_view_has_one_panel_per_variant(client, gallery_root):
    _, built = gallery_root
    run = built[0]
    images = run.gallery["images"]
    second = images[1]
    url = f"/gallery/image?store=gallery&run={run.run_id}&image={second['id']}"
    page = _page(client, url + "&threshold=0.55&hide=ptq_int8")
    panels = re.findall(r'<figure class="panel" data-variant="([^"]+)"', page)
    assert panels == ["float32", "ptq_int8", "qat_int8"]
    overlays = re.findall(r'<svg class="overlay" data-image="(\d+)" data-only="([^"]+)"', page)
    assert overlays == [(str(second["id"]), v) for v in panels]
    assert list(_data(page)["images"]) == [str(second["id"])]
    # Settings carried over from the gallery: the slider and the hidden variant.
    assert 'value="0.55"> <output id="score-value">0.55</output>' in page
    assert 'value="ptq_int8">' in page and 'value="ptq_int8" checked' not in page
    # Previous and next in the gallery's order.
    assert f'image={images[0]["id"]}" id="prev"' in page
    assert f'image={images[2]["id"]}" id="next"' in page
    assert "2 of 8 by difference" in page
    # The thumbnail scaled to at most 512 px wide panels; a 400 px image stays 400 px.
    side = 512.0 if second["width"] > 512 else float(second["width"])
    assert f'style="max-width: {side}px"' in page
    assert _page(client, url.replace(f"image={second['id']}", "image=999"), 404)
    assert _page(client, url.replace(f"image={second['id']}", "image=x"), 404)
    # A classifier's gallery has no full view; nor has a run without a gallery.
    _page(client, f"/gallery/image?store=gallery&run={built[2].run_id}&image=1", 404)


def test_runs_without_gallery_files_still_render(small_root):
    root, built = small_root
    client = create_app(str(root)).test_client()
    for view in ("run", "evaluation", "training", "gallery"):
        page = _page(client, f"/{view}?store=demo&run={built[0].run_id}")
        assert (
            '<span class="muted" id="tab-gallery" data-missing="1">no gallery in this run '
            "(evaluated before the Evaluator wrote detections.json)</span>"
        ) in page, view
    page = _page(client, f"/gallery?store=demo&run={built[0].run_id}")
    assert (
        '<div class="banner warn" id="no-gallery">No gallery in this run (evaluated before the '
        "Evaluator wrote detections.json).</div>"
    ) in page
    evaluation = _page(client, f"/evaluation?store=demo&run={built[0].run_id}")
    assert (
        '<p class="muted" id="no-pr-curves">no precision-recall curves in this run '
        "(evaluated before the Evaluator wrote pr_curves.json).</p>"
    ) in evaluation
    assert '<td class="num" data-metric="AP">41.60</td>' in evaluation  # the rest as before
    # The run whose Evaluator failed has no evaluation at all.
    failed = _page(client, f"/gallery?store=demo&run={built[2].run_id}")
    assert "No gallery in this run (it has no evaluation)." in failed
    _page(client, f"/gallery/image?store=demo&run={built[0].run_id}&image=1", 404)
    _page(client, f"/gallery/thumbnail?store=demo&run={built[2].run_id}&path=gallery/1.jpg", 404)


def test_a_malformed_detections_json_gives_a_message(tmp_path):
    [run] = build_runs(str(tmp_path / "s"), [RunSpec(gallery=GallerySpec(images=2, thumbnails=1))])
    with open(os.path.join(run.evaluation_uri, "detections.json"), "w", encoding="utf-8") as fh:
        fh.write('{"images": [{"id": 1, "width": 10, "height": ')
    os.remove(os.path.join(run.evaluation_uri, "pr_curves.json"))
    client = create_app(str(tmp_path)).test_client()
    page = _page(client, f"/gallery?store=s&run={run.run_id}")
    assert '<div class="banner bad" id="gallery-error">The gallery cannot be shown: ' in page
    assert "detections.json is not readable JSON" in page and "Traceback" not in page
    _page(client, f"/gallery/image?store=s&run={run.run_id}&image=1", 404)
    evaluation = _page(client, f"/evaluation?store=s&run={run.run_id}")
    assert "evaluated before the Evaluator wrote pr_curves.json" in evaluation
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [1, 2')
    assert "not readable JSON" in gallery.read_detections(str(broken)).error
    broken.write_text('{"images": {}}')
    assert gallery.read_detections(str(broken)).error == "detections.json has no list of images"
    assert gallery.read_detections(str(tmp_path / "none.json")).error == "no none.json"


# --- thumbnails: only the run's own evaluation artifact ------------------------------------


def test_thumbnails_are_served_from_the_runs_evaluation_artifact_only(gallery_root, tmp_path):
    root, built = gallery_root
    run = built[0]
    client = create_app(str(root)).test_client()
    base = f"/gallery/thumbnail?store=gallery&run={run.run_id}&path="
    thumb = next(im["thumbnail"] for im in run.gallery["images"] if im["thumbnail"])
    ok = client.get(base + thumb)
    assert ok.status_code == 200 and ok.mimetype == "image/jpeg"
    assert ok.data[:3] == b"\xff\xd8\xff"
    assert ok.headers["Content-Security-Policy"] == "sandbox"
    # A symlink inside the evaluation artifact pointing out of the root, and one pointing at
    # another artifact of the root: both refused (the target is what counts).
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"\xff\xd8\xffsecret")
    gallery_dir = os.path.join(run.evaluation_uri, "gallery")
    links = {
        "escape.jpg": str(outside / "secret.jpg"),
        "other-run.jpg": os.path.join(built[1].evaluation_uri, "gallery", "1.jpg"),
    }
    other = f"../{os.path.basename(built[1].evaluation_uri)}/gallery/1.jpg"
    assert os.path.isfile(os.path.join(run.evaluation_uri, other))
    for name, target in links.items():
        if not os.path.lexists(os.path.join(gallery_dir, name)):
            os.symlink(target, os.path.join(gallery_dir, name))
    try:
        for path in (
            "../../../../../../../../etc/passwd",
            "/etc/passwd",
            "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "../metrics.json",  # inside the artifact, but not an image
            "metrics.json",
            "",
            "../../../Trainer/model_run/0",
            other,  # another run's thumbnail
            str(outside / "secret.jpg"),
            "gallery/escape.jpg",
            "gallery/other-run.jpg",
            "gallery/\x00.jpg",
        ):
            response = client.get(base + path)
            assert response.status_code == 403, path
            assert b"secret" not in response.data and b"root:" not in response.data
        assert client.get(base + "gallery/no-such.jpg").status_code == 404
        other_run = f"/gallery/thumbnail?store=gallery&run=nope&path={thumb}"
        assert client.get(other_run).status_code == 404
    finally:
        for name in links:
            os.unlink(os.path.join(gallery_dir, name))


#: Thumbnail paths of a document, and what the reader keeps of each.
THUMBNAIL_PATHS = ["gallery/1.jpg", "../x.jpg", "/etc/x.jpg", "gallery/x.txt", "a\\..\\b.jpg", 7,
                   None, "gallery/../../x.png", "g/ok.PNG"]  # fmt: skip


def test_thumbnail_paths_of_the_document_are_checked(tmp_path):
    doc = {
        "version": 1,
        "baseline": "f",
        "categories": [{"id": 1, "name": "a"}],
        "images": [
            {"id": i, "file_name": "x", "width": 10, "height": 10, "thumbnail": thumb}
            for i, thumb in enumerate(THUMBNAIL_PATHS)
        ],
        "detections": {"f": {}},
    }
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(doc))
    found = gallery.read_detections(str(path))
    assert [im.thumbnail for im in found.images] == [
        "gallery/1.jpg", "", "", "", "", "", "", "", "g/ok.PNG",
    ]  # fmt: skip


def test_malformed_entries_and_boxes_are_skipped(tmp_path):
    doc = {
        "baseline": "float",
        "diff_threshold": 7,  # not a score: the default
        "categories": [{"id": 1, "name": "cat"}, {"id": "x"}, "junk"],
        "images": [
            {"id": 1, "width": 100, "height": 50, "difference": {"q": 0.5, "r": "x"},
             "ground_truth": [[1, 2, 3, 4, 1], [1, 2, -3, 4, 1], [1, 2, 3], "x", [1, 2, 3, 4, .5]]},
            {"id": True, "width": 100, "height": 50},
            {"id": 2, "width": 0, "height": 50},
            {"width": 100, "height": 50},
            "junk",
        ],
        "detections": {
            "q": {"1": [[1, 2, 3, 4, 0.9, 1], [1, 2, 3, 4, math.inf, 1], [1, 2, 3, 4, 0.5]]},
            "float": {"1": "junk"},
            "broken": [1, 2],
        },
    }  # fmt: skip
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(doc))
    found = gallery.read_detections(str(path))
    assert found.error == "" and found.skipped == 4
    assert found.variants == ["float", "q"]  # the baseline first; "broken" is not a mapping
    assert found.categories == {1: "cat"}
    assert found.diff_threshold == gallery.DEFAULT_THRESHOLD
    [image] = found.images
    assert image.ground_truth == [[1.0, 2.0, 3.0, 4.0, 1]]
    assert image.boxes == {"float": [], "q": [[1.0, 2.0, 3.0, 4.0, 0.9, 1]]}
    assert image.difference == {"q": 0.5, "r": None} and image.max_difference == 0.5
    assert found.colours == {"float": gallery.PALETTE[0], "q": gallery.PALETTE[1]}


def test_documents_are_cached_until_they_change(tmp_path):
    state = DashboardState(str(tmp_path))
    path = tmp_path / "detections.json"
    path.write_text(json.dumps({"images": [], "detections": {"a": {}}}))
    first = state.document(str(path), gallery.read_detections)
    assert state.document(str(path), gallery.read_detections) is first
    path.write_text(json.dumps({"images": [], "detections": {"a": {}, "bb": {}}}))
    os.utime(path, ns=(1, 1))
    assert state.document(str(path), gallery.read_detections).variants == ["a", "bb"]


# --- hostile names --------------------------------------------------------------------------


def test_hostile_class_and_file_names_are_escaped(client, gallery_root):
    _, built = gallery_root
    detection = built[1]
    pages = {
        "gallery": _page(client, f"/gallery?store=gallery&run={detection.run_id}"),
        "view": _page(client, f"/gallery/image?store=gallery&run={detection.run_id}&image=1"),
        "evaluation": _page(client, f"/evaluation?store=gallery&run={detection.run_id}"),
        "pr class": _page(
            client,
            f"/evaluation?store=gallery&run={detection.run_id}&pr_class="
            + urllib.parse.quote(XSS_CLASSES[0]),
        ),
        "misclassified": _page(client, f"/gallery?store=gallery&run={built[3].run_id}"),
        "misclassified ptq": _page(
            client, f"/gallery?store=gallery&run={built[3].run_id}&variant=ptq_int8"
        ),
    }
    for name, page in pages.items():
        for raw in ("<script>window", "<img src=x", "<svg onload", "<b>bold</b>", '"><img src=x'):
            assert raw not in page, (name, raw)
        for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S):
            assert "<" not in block, name
    files = re.findall(r'<span class="file mono">(.*?)</span>', pages["gallery"])
    assert sorted(files) == [str(escape(XSS_FILE + f"img_{i:03d}.jpg")) for i in (1, 2, 3)]
    assert f'alt="{escape(XSS_FILE)}img_' in pages["gallery"]
    # The browser gets the names as JSON strings and sets them as text.
    assert _data(pages["gallery"])["categories"] == {
        "1": XSS_CLASSES[0], "2": XSS_CLASSES[1], "3": "triangle",
    }  # fmt: skip
    # PR curves: the class selector's options (escaped) and plotly's title (HTML-escaped).
    options = re.findall(r'<option value="([^"]*)"', pages["evaluation"])
    assert options == ["", *(str(escape(c)) for c in XSS_CLASSES), "triangle"]
    title = _figure(pages["pr class"], "chart-pr-iou50")["layout"]["title"]["text"]
    assert title == "IoU 0.50: " + html.escape(XSS_CLASSES[0], quote=False)
    # Misclassified images: labels and file names (the class is the file's folder).
    labels = re.findall(r'<strong class="true-label">(.*?)</strong>', pages["misclassified"])
    assert set(labels) <= {str(escape(c)) for c in XSS_CLASSES} and labels


# --- precision-recall curves ------------------------------------------------------------


def test_pr_curves_one_line_per_variant_with_a_class_selector(client, gallery_root):
    _, built = gallery_root
    run = built[0]
    with open(os.path.join(run.evaluation_uri, pr_curves.PR_CURVES_FILE), encoding="utf-8") as fh:
        document = json.load(fh)
    page = _page(client, f"/evaluation?store=gallery&run={run.run_id}")
    titles = {"iou50": "IoU 0.50: all classes", "mean": "mean IoU .50:.95: all classes"}
    for key, title in titles.items():
        figure = _figure(page, f"chart-pr-{key}")
        assert [t["name"] for t in figure["data"]] == ["float32", "ptq_int8", "qat_int8"]
        assert figure["layout"]["title"]["text"] == title
        for trace in figure["data"]:
            assert trace["x"] == document["recall"]
            assert trace["y"] == pytest.approx(document["variants"][trace["name"]]["all"][key])
    colours = [t["line"]["color"] for t in _figure(page, "chart-pr-iou50")["data"]]
    assert colours == list(gallery.PALETTE[:3])  # the gallery's variant colours
    options = re.findall(r'<option value="([^"]*)"( selected)?>', page)
    assert options == [("", " selected"), ("circle", ""), ("square", ""), ("triangle", "")]
    square = _page(client, f"/evaluation?store=gallery&run={run.run_id}&pr_class=square")
    figure = _figure(square, "chart-pr-mean")
    assert figure["layout"]["title"]["text"] == "mean IoU .50:.95: square"
    assert figure["data"][1]["y"] == pytest.approx(
        document["variants"]["ptq_int8"]["per_class"]["square"]["mean"]
    )
    assert '<option value="square" selected>' in square
    unknown = _page(client, f"/evaluation?store=gallery&run={run.run_id}&pr_class=nope")
    assert _figure(unknown, "chart-pr-iou50")["layout"]["title"]["text"] == "IoU 0.50: all classes"


def test_pr_curves_reader_handles_gaps_and_bad_curves(tmp_path):
    path = tmp_path / "pr_curves.json"
    path.write_text(
        json.dumps(
            {
                "recall": [0.0, 0.5, 1.0],
                "variants": {
                    "a": {"all": {"iou50": [1.0, None, -1], "mean": [1, 2]},
                          "per_class": {"x": {"iou50": [0.5, 0.4, 0.0]}, "y": "junk"}},
                    "b": "junk",
                },
            }
        )
    )  # fmt: skip
    curves = pr_curves.read_pr_curves(str(path))
    assert curves.error == "" and curves.variants == ["a"] and curves.classes == ["x", "y"]
    assert curves.curves("", "iou50") == {"a": [1.0, None, None]}
    assert curves.curves("", "mean") == {}  # wrong length: left out
    assert curves.curves("x", "iou50") == {"a": [0.5, 0.4, 0.0]}
    context = pr_context(curves, "x")
    assert context["selected"] == "x"
    assert context["figures"]["iou50"]["data"][0]["y"] == [0.5, 0.4, 0.0]
    path.write_text('{"variants": {}, "recall": "x"}')
    assert "no list of recall points" in pr_curves.read_pr_curves(str(path)).error
    assert pr_context(pr_curves.read_pr_curves(str(path))) == {
        "error": "pr_curves.json has no list of recall points"
    }


# --- QAT training curves ----------------------------------------------------------------------


def test_qat_training_curves_beside_the_float_ones(client, gallery_root):
    _, built = gallery_root
    run = built[0]
    page = _page(client, f"/training?store=gallery&run={run.run_id}")
    assert 'id="no-qat-logs"' not in page
    assert 'QATTrainer: <a class="mono" href="/files/gallery/QATTrainer/model_run/0"' in page
    data = client.get(f"/api/training?store=gallery&run={run.run_id}").get_json()
    assert data["series"] == 8
    assert [log["component"] for log in data["logs"]] == ["Trainer", "QATTrainer"]
    assert [c["title"] for c in data["charts"]] == ["loss", "learning rate", "AP"]
    loss = data["charts"][0]
    assert loss["components"] == ["Trainer", "QATTrainer"]
    titles = [a["text"] for a in loss["figure"]["layout"]["annotations"]]
    assert titles == ["float (Trainer)", "QAT (QATTrainer)"]
    traces = [(t["name"], t["xaxis"], t["showlegend"]) for t in loss["figure"]["data"]]
    assert traces == [
        ("train loss", "x", True), ("validation loss", "x", True),
        ("train loss", "x2", False), ("validation loss", "x2", False),
    ]  # fmt: skip
    qat = training_scalars(run.spec, qat=True)
    qat_train = loss["figure"]["data"][2]
    assert qat_train["x"] == list(range(1, QAT_EPOCHS + 1))
    assert qat_train["y"] == pytest.approx([v for _, v in qat["train"]["epoch_loss"]], rel=1e-6)
    # Same colour for a line in both columns, shared y axis.
    assert qat_train["line"]["color"] == loss["figure"]["data"][0]["line"]["color"]
    assert loss["figure"]["layout"]["yaxis2"]["matches"] == "y"


def test_runs_without_qat_logs_say_so(small_root):
    root, built = small_root
    client = create_app(str(root)).test_client()
    page = _page(client, f"/training?store=demo&run={built[0].run_id}")
    assert (
        '<div class="banner warn" id="no-qat-logs">No QAT training curves in this run: its '
        "QATTrainer has no model_run output (trained before the QATTrainer wrote TensorBoard "
        "logs).</div>"
    ) in page
    data = client.get(f"/api/training?store=demo&run={built[0].run_id}").get_json()
    assert [c["components"] for c in data["charts"]] == [["Trainer"]] * 3
    detail = DashboardState(str(root)).detail("demo", built[0].run_id)
    without = store.RunDetail(
        row=detail.row,
        executions=[e for e in detail.executions if e.component != "QATTrainer"],
        edges=[],
    )
    assert qat_note(without) == "No QAT training curves: this run has no QATTrainer (QAT was off)."
    failed = [
        dataclasses.replace(e, state="FAILED") if e.component == "QATTrainer" else e
        for e in detail.executions
    ]
    assert "QATTrainer of this run failed" in qat_note(
        store.RunDetail(row=detail.row, executions=failed, edges=[])
    )


# --- classification: misclassified images --------------------------------------------------


def test_misclassified_images_per_variant(client, gallery_root):
    _, built = gallery_root
    run = built[2]
    doc = run.gallery
    url = f"/gallery?store=gallery&run={run.run_id}"
    page = _page(client, url)
    assert 'id="tab-gallery">Misclassified images</a>' in page
    # Default: the candidate; the selector counts each variant's mistakes, which agree with
    # the off-diagonal cells of metrics.json's confusion matrices.
    wrong = {
        e["variant"]: sum(c for i, row in enumerate(e["confusion_matrix"]) for j, c in
                          enumerate(row) if i != j)
        for e in run.metrics["variants"]
    }  # fmt: skip
    options = re.findall(r'<option value="([^"]+)"( selected)?>\1 \((\d+) wrong\)</option>', page)
    assert [(v, int(n)) for v, _, n in options] == list(wrong.items())
    assert [v for v, selected, _ in options if selected] == ["qat_int8"]

    def cards(page: str) -> list[tuple[int, str, str, str]]:
        found = re.findall(
            r'<figure class="card" data-index="(\d+)">.*?<span class="file mono">(.*?)</span>.*?'
            r'class="true-label">(.*?)</strong>.*?class="predicted-label not-blessed">(.*?)'
            r'</strong>\s*<span class="probability">(.*?)%</span>',
            page,
            re.S,
        )
        return [(int(i), f, t, p, float(prob)) for i, f, t, p, prob in found]

    for variant in ("qat_int8", "ptq_int8", "keras_float"):
        shown = cards(_page(client, f"{url}&variant={variant}"))
        expected = [
            (im["index"], im["file_name"], doc["classes"][im["label"]],
             doc["classes"][pred[0]], round(pred[1] * 100, 1))
            for im, pred in zip(doc["images"], doc["predictions"][variant], strict=True)
            if pred[0] != im["label"]
        ]  # fmt: skip
        assert sorted(shown) == sorted(expected)
        assert len(shown) == wrong[variant]
        probabilities = [c[4] for c in shown]
        assert probabilities == sorted(probabilities, reverse=True)  # most confident first
    assert f'path=gallery/{cards(page)[0][0]}.jpg"' in page  # thumbnails of the mistakes
    # An unknown variant falls back to the candidate.
    assert 'data-variant="qat_int8"' in _page(client, f"{url}&variant=nope")


def test_prediction_reader_and_pick(tmp_path):
    path = tmp_path / "predictions.json"
    path.write_text(
        json.dumps(
            {
                "classes": ["a", "b"],
                "baseline": "f",
                "images": [{"index": 0, "label": 0}, {"index": 1, "label": "x"},
                           {"index": 2, "label": 1, "thumbnail": "../2.jpg"}],
                "predictions": {"f": [[0, 0.9], [1, 0.8], [0, 0.7]], "q": [[5, 0.6]], "bad": {}},
            }
        )
    )  # fmt: skip
    found = gallery.read_predictions(str(path))
    assert found.variants == ["f", "q"] and found.skipped == 1
    assert [im.index for im in found.images] == [0, 2] and found.images[1].thumbnail == ""
    assert found.errors() == {"f": 1, "q": 1}
    assert found.class_name(5) == "class 5" and found.class_name(None) == "?"
    assert [im.index for im in found.misclassified("q")] == [0]
    assert found.images[1].predictions["q"] == (None, None)  # the list is too short
    assert found.pick("") == "q" and found.pick("nope", "f") == "f" and found.pick("f") == "f"
