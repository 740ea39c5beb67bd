"""Fixtures of the dashboard tests: generated MLMD stores and a live server.

Stores are built once per session. The 200-run store goes to /dev/shm when
there is one: SQLite syncs every MLMD write to disk, which takes ~50 s on a
busy disk and ~10 s in memory.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
import threading

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from gallery_builder import GallerySpec  # noqa: E402
from store_builder import RunSpec, build_runs, many_specs  # noqa: E402

from model_maker.core.options import IMAGE_CLASSIFICATION  # noqa: E402

#: The small store's runs, oldest first: a fresh run, a run whose ExampleGen
#: was a cache hit with other settings and a QAT drop over the limit, and a run
#: whose Evaluator failed.
SMALL_SPECS = (
    RunSpec(float_ap=0.42, ptq_drop=0.031, qat_drop=0.004, epochs=4, logs=True),
    RunSpec(
        float_ap=0.45,
        ptq_drop=0.05,
        qat_drop=0.02,
        epochs=6,
        learning_rate=0.05,
        cache_example_gen=True,
        logs=True,
    ),  # fmt: skip
    RunSpec(float_ap=0.40, fail_at="Evaluator", epochs=2),
)

#: Class names that try to break out of every place a class name is written:
#: HTML text, attributes (title, option), and the JSON of a plotly figure in <script>.
XSS_CLASSES = (
    '</script><script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">',
    '"><img src=x onerror=window.__xss=3> & <b>bold</b>',
)
#: The mixed store's runs, oldest first: a detection run, a classification run
#: (fixtures/classification_metrics.json), the same with hostile class names, and
#: a classification run whose Evaluator failed.
MIXED_SPECS = (
    RunSpec(),
    RunSpec(task=IMAGE_CLASSIFICATION),
    RunSpec(task=IMAGE_CLASSIFICATION, class_names=XSS_CLASSES),
    RunSpec(task=IMAGE_CLASSIFICATION, fail_at="Evaluator"),
)


#: A file name prefix that tries to break out of HTML text, attributes and SVG.
XSS_FILE = '<img src=x onerror="window.__xss = 5"><svg onload=window.__xss=6>'
#: The gallery store's runs (contract 18 files), oldest first: a detection run with
#: float and QAT training logs, the same with hostile class and file names, a
#: classification run and the same with hostile class names (so hostile file names).
GALLERY_SPECS = (
    RunSpec(logs=True, qat_logs=True, epochs=3, gallery=GallerySpec()),
    RunSpec(
        class_names=(*XSS_CLASSES, "triangle"),
        gallery=GallerySpec(images=3, thumbnails=3, file_prefix=XSS_FILE),
    ),
    RunSpec(task=IMAGE_CLASSIFICATION, gallery=GallerySpec()),
    RunSpec(task=IMAGE_CLASSIFICATION, class_names=XSS_CLASSES, gallery=GallerySpec()),
)


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> tuple[pathlib.Path, list]:
    """A dashboard root holding ``demo/metadata.sqlite`` with the three SMALL_SPECS runs."""
    root = tmp_path_factory.mktemp("dash-small")
    runs = build_runs(str(root / "demo"), SMALL_SPECS)
    return root, runs


@pytest.fixture(scope="session")
def mixed_root(tmp_path_factory) -> tuple[pathlib.Path, list]:
    """A dashboard root holding ``mixed/metadata.sqlite`` with the four MIXED_SPECS runs."""
    root = tmp_path_factory.mktemp("dash-mixed")
    runs = build_runs(str(root / "mixed"), MIXED_SPECS)
    return root, runs


@pytest.fixture(scope="session")
def many_root() -> tuple[pathlib.Path, list]:
    """A dashboard root with one store of 200 runs."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = pathlib.Path(tempfile.mkdtemp(prefix="qatflow-dash-many-", dir=base))
    try:
        runs = build_runs(str(root / "many"), many_specs(200))
        yield root, runs
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def gallery_root(tmp_path_factory) -> tuple[pathlib.Path, list]:
    """A dashboard root holding ``gallery/metadata.sqlite`` with the four GALLERY_SPECS runs."""
    root = tmp_path_factory.mktemp("dash-gallery")
    runs = build_runs(str(root / "gallery"), GALLERY_SPECS)
    return root, runs


class LiveServer:
    """The app served by werkzeug in a thread on 127.0.0.1 and a free port."""

    def __init__(self, app) -> None:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def small_server(small_root):
    from dashboard.app import create_app

    server = LiveServer(create_app(str(small_root[0])))
    yield server
    server.close()


@pytest.fixture(scope="session")
def mixed_server(mixed_root):
    from dashboard.app import create_app  # deferred: Flask loads only when a server is needed

    server = LiveServer(create_app(str(mixed_root[0])))
    yield server
    server.close()


@pytest.fixture(scope="session")
def gallery_server(gallery_root):
    from dashboard.app import create_app

    server = LiveServer(create_app(str(gallery_root[0])))
    yield server
    server.close()
