"""Dashboard gallery speed: server time (Flask test client) and full page load in Chromium.

Builds one detection run whose evaluation artifact holds the gallery files of contract 18
(written by the tests' gallery_builder, as the Evaluator will): ``--images`` eval images x
4 variants (keras_float baseline, float32, ptq_int8, qat_int8), about 10 boxes per image
and variant, a thumbnail per image. Then, ``--repeat`` times each:

- server: the gallery page, the full view of one image and the evaluation page (PR curves)
  through Flask's test client; the first request of each reads and checks the JSON
  documents ("cold"), the others are served from the app's cache ("warm");
- browser: headless Chromium (Playwright, a fresh context each time, so no HTTP cache)
  opens the gallery page and the full view over a local werkzeug server; ``load`` is the
  navigation's loadEventEnd, ``drawn`` the moment gallery.js set data-drawn (every box of
  the page drawn as SVG), both in ms since navigation start. Thumbnails are
  ``loading="lazy"``: those below the first screen do not hold up ``load``.

Prints a table; writes bench/results/dashboard.json (with the machine and its load
average: other work on the machine makes these numbers noisy). Target: the gallery page
loaded with its boxes drawn in under 1 s.

Run: .venv/bin/python bench/bench_dashboard.py [--images 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

from machine_info import machine_info

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "dashboard"))  # the gallery fixtures of the tests

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VARIANTS = ("keras_float", "float32", "ptq_int8", "qat_int8")
TARGET_S = 1.0
#: Records when gallery.js marks the boxes drawn (ms since navigation start).
DRAWN_PROBE = """
window.__drawnAt = null;
document.addEventListener("DOMContentLoaded", function () {
  const holder = document.querySelector("[data-gallery]");
  if (!holder) { return; }
  new MutationObserver(function () {
    if (window.__drawnAt === null && holder.hasAttribute("data-drawn")) {
      window.__drawnAt = performance.now();
    }
  }).observe(holder, { attributes: true });
}, { capture: true });
"""


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
    }


def _build(root: str, images: int) -> tuple[object, dict]:
    from gallery_builder import GallerySpec
    from store_builder import RunSpec, build_runs

    spec = GallerySpec(
        images=images,
        objects=8,
        false_positives=3,
        thumbnails=images,
        variants=VARIANTS,
        baseline="keras_float",
    )
    [run] = build_runs(os.path.join(root, "bench"), [RunSpec(gallery=spec)])
    doc = run.gallery
    boxes = sum(len(b) for per_image in doc["detections"].values() for b in per_image.values())
    return run, {
        "images": images,
        "variants": list(VARIANTS),
        "boxes": boxes,
        "boxes_per_image_and_variant": round(boxes / (images * len(VARIANTS)), 1),
        "ground_truth_boxes": sum(len(im["ground_truth"]) for im in doc["images"]),
        "detections_json_bytes": os.path.getsize(
            os.path.join(run.evaluation_uri, "detections.json")
        ),
    }


def _server_times(root: str, urls: dict[str, str], repeat: int) -> list[dict]:
    from dashboard.app import create_app

    rows = []
    for name, url in urls.items():
        for attempt in range(repeat):
            client = create_app(root).test_client()  # a fresh app: nothing cached
            times = []
            for _ in range(3):
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            rows.append(
                {
                    "page": name,
                    "attempt": attempt,
                    "cold_ms": round(times[0], 1),
                    "warm_ms": round(min(times[1:]), 1),
                    "bytes": len(response.data),
                }
            )
    return rows


def _browser_times(base: str, urls: dict[str, str], repeat: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        for name, url in urls.items():
            for attempt in range(repeat + 1):  # the first warms up Chromium itself; not counted
                context = browser.new_context(viewport={"width": 1360, "height": 900})
                page = context.new_page()
                page.add_init_script(DRAWN_PROBE)
                start = time.perf_counter()
                page.goto(base + url, wait_until="load")
                page.wait_for_selector("[data-gallery][data-drawn]", state="attached")
                page.wait_for_function("() => window.__drawnAt !== null")
                wall = (time.perf_counter() - start) * 1000
                timing = page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return {load: n.loadEventEnd, dom: n.domContentLoadedEventEnd,"
                    " drawn: window.__drawnAt,"
                    " rects: document.querySelectorAll('svg.overlay rect').length}; }"
                )
                context.close()
                if attempt == 0:
                    continue
                rows.append(
                    {
                        "page": name,
                        "attempt": attempt,
                        "load_ms": round(timing["load"], 1),
                        "dom_ms": round(timing["dom"], 1),
                        "drawn_ms": round(timing["drawn"], 1),
                        "ready_ms": round(max(timing["load"], timing["drawn"]), 1),
                        "wall_ms": round(wall, 1),
                        "rects": timing["rects"],
                    }
                )
        browser.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "dashboard.json"))
    args = parser.parse_args()

    from werkzeug.serving import make_server

    from dashboard.app import create_app

    info = machine_info("flask", "werkzeug", "plotly", "playwright")
    base_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="qatflow-bench-dash-", dir=base_dir) as root:
        started = time.perf_counter()
        run, fixture = _build(root, args.images)
        fixture["build_s"] = round(time.perf_counter() - started, 1)
        second = run.gallery["images"][1]["id"]
        query = f"store=bench&run={run.run_id}"
        urls = {
            "gallery": f"/gallery?{query}",
            "full view": f"/gallery/image?{query}&image={second}",
            "evaluation + PR curves": f"/evaluation?{query}",
        }
        server_rows = _server_times(root, urls, args.repeat)
        server = make_server("127.0.0.1", 0, create_app(root), threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_port}"
            browser_urls = {k: v for k, v in urls.items() if k != "evaluation + PR curves"}
            browser_rows = _browser_times(base, browser_urls, args.repeat)
        finally:
            server.shutdown()
            thread.join(timeout=10)

    summary = []
    for name in urls:
        cold = [r["cold_ms"] for r in server_rows if r["page"] == name]
        warm = [r["warm_ms"] for r in server_rows if r["page"] == name]
        row = {"page": name, "server_cold": _stats(cold), "server_warm": _stats(warm)}
        row["html_bytes"] = next(r["bytes"] for r in server_rows if r["page"] == name)
        shown = [r for r in browser_rows if r["page"] == name]
        if shown:
            for key in ("load", "drawn", "ready", "wall"):
                row[f"browser_{key}"] = _stats([r[f"{key}_ms"] for r in shown])
            row["rects"] = shown[0]["rects"]
        summary.append(row)
    gallery = summary[0]
    met = gallery["browser_ready"]["median_ms"] < TARGET_S * 1000
    finished = os.getloadavg()

    print()
    print(
        f"fixture: {fixture['images']} images x {len(VARIANTS)} variants, {fixture['boxes']} "
        f"boxes ({fixture['boxes_per_image_and_variant']} per image and variant), "
        f"detections.json {fixture['detections_json_bytes'] / 1024:.0f} KiB"
    )
    print(
        f"load average {info['load_average_at_start'][0]:.2f} at start, {finished[0]:.2f} at "
        f"the end, {info['cpu_count']} cores; {args.repeat} repeats, medians (min-max) in ms"
    )
    print(f"{'page':<24} {'server cold':>16} {'server warm':>14} {'load event':>16} "
          f"{'boxes drawn':>16} {'rects':>6}")  # fmt: skip

    def cell(stats: dict | None) -> str:
        if not stats:
            return "-"
        return f"{stats['median_ms']:.0f} ({stats['min_ms']:.0f}-{stats['max_ms']:.0f})"

    for row in summary:
        print(
            f"{row['page']:<24} {cell(row['server_cold']):>16} {cell(row['server_warm']):>14} "
            f"{cell(row.get('browser_load')):>16} {cell(row.get('browser_drawn')):>16} "
            f"{row.get('rects', '-'):>6}"
        )
    print(
        f"target: gallery page loaded with boxes drawn < {TARGET_S:.0f} s: "
        f"{'met' if met else 'NOT met'} (median {gallery['browser_ready']['median_ms']:.0f} ms)"
    )
    result = {
        "benchmark": "dashboard",
        "description": "Gallery of one detection run (contract 18 files): server time per page "
        "with Flask's test client (cold: documents read, warm: cached) and the full page load in "
        "headless Chromium (navigation start to the load event, and to every box drawn by "
        "gallery.js), fresh browser context per load",
        "fixture": fixture,
        "repeat": args.repeat,
        "machine": info,
        "finished_load_average": finished,
        "summary": summary,
        "server": server_rows,
        "browser": browser_rows,
        "target": {"gallery_ready_under_s": TARGET_S, "met": met},
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
