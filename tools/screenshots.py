"""Take the README's dashboard screenshots from a real run: ``make screenshots``.

Serves the dashboard over ``--root`` (``runs``, where ``make run`` writes) on a
free loopback port, opens the latest run of ``--store`` (``demo``) in Debian's
chromium through Playwright, and writes one PNG per page into ``--out``
(``docs``): the evaluation table and charts, the gallery, one image with all
variants side by side, and the float and QAT training curves. Fails with one
line when the run is missing or a page does not render.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import threading
from urllib.parse import urlencode

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
VIEWPORT = {"width": 1360, "height": 900}
TIMEOUT_MS = 60_000


def _latest_run(root: pathlib.Path, store: str) -> str:
    path = root / store / "latest_run.json"
    if not path.is_file():
        raise SystemExit(f"screenshots: no {path}: run `make run` first")
    return json.loads(path.read_text())["run_id"]


def _serve(root: pathlib.Path):
    # deferred: Flask and the dashboard load only when screenshots are taken
    from werkzeug.serving import make_server

    from dashboard.app import create_app

    server = make_server("127.0.0.1", 0, create_app(str(root)), threaded=True)
    threading.Thread(target=server.serve_forever, name="dashboard", daemon=True).start()
    return server


def _shoot(page, url: str, ready: str, path: pathlib.Path) -> None:
    page.goto(url)
    page.wait_for_selector(ready, state="attached")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path}")


def take(root: pathlib.Path, store: str, out: pathlib.Path) -> None:
    """Write the screenshots of the latest run of ``root/store`` into ``out``."""
    # deferred: Playwright starts a browser driver; only this command needs it
    from playwright.sync_api import sync_playwright

    run = _latest_run(root, store)
    out.mkdir(parents=True, exist_ok=True)
    server = _serve(root)
    base = f"http://127.0.0.1:{server.server_port}"
    query = urlencode({"store": store, "run": run})
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            _shoot(
                page,
                f"{base}/evaluation?{query}",
                "[data-rendered] .main-svg",
                out / "dashboard-evaluation.png",
            )
            _shoot(
                page,
                f"{base}/gallery?{query}",
                "#gallery[data-drawn]",
                out / "dashboard-gallery.png",
            )
            page.click("#gallery figure.card a.frame >> nth=0")
            page.wait_for_selector("#panels[data-drawn]")
            page.screenshot(path=str(out / "dashboard-gallery-image.png"))
            print(f"wrote {out / 'dashboard-gallery-image.png'}")
            _shoot(
                page,
                f"{base}/training?{query}",
                "#training[data-loaded] [data-rendered] .main-svg",
                out / "dashboard-training.png",
            )
            browser.close()
    finally:
        server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="runs", help="dashboard root (runs)")
    parser.add_argument("--store", default="demo", help="pipeline root under --root (demo)")
    parser.add_argument("--out", default="docs", help="folder for the PNGs (docs)")
    args = parser.parse_args(argv)
    take(pathlib.Path(args.root), args.store, pathlib.Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
