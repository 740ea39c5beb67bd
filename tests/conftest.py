"""Test-wide settings: Keras 2 for TensorFlow, quiet TF logs, the shared dataset path."""

import os
import pathlib
import tempfile

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# memtest:// (an in-memory Beam filesystem standing in for gs://) for any test module.
from tests.memtest_fs import mem, store  # noqa: E402, F401 - fixtures

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("QATFLOW_SHARED_DIR", REPO.parent / "shared"))

#: Test files that share the session's pipeline runs (``tiny_pipeline``,
#: ``tiny_classification``): under ``pytest -n`` one worker runs them all, so each
#: run is made once.
PIPELINE_RUN_FILES = (
    "tests/notebooks/test_notebooks.py",
    "tests/pipeline/test_e2e.py",
    "tests/pipeline/test_e2e_classification.py",
)
PIPELINE_RUNS = "pipeline-runs"


def _scope(nodeid: str) -> str:
    """The xdist scope of a test: its file, or PIPELINE_RUNS for the files sharing the runs."""
    path = nodeid.split("::", 1)[0]
    return PIPELINE_RUNS if path in PIPELINE_RUN_FILES else path


def pytest_collection_modifyitems(config, items):
    """The pipeline-run tests first: the longest group starts first, so it is not the
    one left running at the end under ``pytest -n``."""
    items.sort(key=lambda item: _scope(item.nodeid) != PIPELINE_RUNS)


def pytest_xdist_make_scheduler(config, log):
    """``make test`` runs ``pytest -n 2``: whole files go to one worker (a module-scoped
    fixture is built once), and the three files sharing the pipeline runs go together.
    (xdist's own ``--dist loadgroup`` cannot do it with pytest 9: its group suffix
    never reaches the node ids.)"""
    # deferred: xdist is only there when pytest runs with -n
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return ByFile(config, log)


@pytest.fixture(scope="session", autouse=True)
def _temp_files_in_basetemp(tmp_path_factory):
    """Every temporary file of the tests, and of the processes they start, goes under
    pytest's base temp folder (which pytest prunes), not into /tmp. Beam's
    ``beam-pipeline-temp*`` folders would pile up there otherwise: only the end of
    ``Pipeline.run()`` removes one, and not in an IPython kernel, so pipelines a test
    builds and never runs, killed runs and the notebooks' kernel each left theirs."""
    folder = str(tmp_path_factory.mktemp("tmp"))
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = folder
    yield
    if before[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[0]
    tempfile.tempdir = before[1]


@pytest.fixture(scope="session")
def raccoon_dir() -> pathlib.Path:
    path = SHARED / "datasets" / "raccoon"
    if not path.is_dir():
        pytest.fail(f"shared dataset missing: {path} (the repo expects ../shared beside it)")
    return path


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The tiny pipeline, killed during QAT and rerun to the end (see tests/tiny_pipeline.py)."""
    from tests.tiny_pipeline import make_tiny_pipeline

    return make_tiny_pipeline(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="session")
def tiny_classification(tmp_path_factory):
    """The tiny image-classification run (see tests/tiny_classification.py)."""
    from tests.tiny_classification import make_tiny_classification

    return make_tiny_classification(tmp_path_factory.mktemp("e2e-cls"))


@pytest.fixture
def autograph_conversions(monkeypatch) -> list[str]:
    """Names of the functions AutoGraph converts while the test runs (calls go on as before)."""
    from tensorflow.python.autograph.impl import api

    converted: list[str] = []
    original = api._convert_actual

    def counting(entity, program_ctx):
        converted.append(getattr(entity, "__qualname__", repr(entity)))
        return original(entity, program_ctx)

    monkeypatch.setattr(api, "_convert_actual", counting)
    return converted
