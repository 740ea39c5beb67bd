"""containers/tpu/: the TPU image's pyproject.toml and uv.lock stay the main project's,
but on TensorFlow 2.20 from tensorflow-tpu (which has no 2.21 release)."""

import pathlib
import re
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TPU = REPO / "containers" / "tpu"
#: The requirements only one of the two projects has.
MAIN_ONLY = {"tensorflow", "tf-keras"}
TPU_ONLY = {"tensorflow-tpu", "libtpu", "tf-keras"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group(0)).lower()


def _toml(path: pathlib.Path) -> dict:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def main():
    return _toml(REPO / "pyproject.toml")


@pytest.fixture(scope="module")
def tpu():
    return _toml(TPU / "pyproject.toml")


@pytest.fixture(scope="module")
def tpu_lock():
    return {p["name"]: p for p in _toml(TPU / "uv.lock")["package"]}


def test_same_project_same_dependencies_but_tensorflow(main, tpu):
    for key in ("name", "version", "requires-python", "scripts"):
        assert tpu["project"].get(key) == main["project"].get(key), key
    assert tpu["tool"]["hatch"] == main["tool"]["hatch"]
    main_deps = {d for d in main["project"]["dependencies"] if _name(d) not in MAIN_ONLY}
    tpu_deps = {d for d in tpu["project"]["dependencies"] if _name(d) not in TPU_ONLY}
    assert tpu_deps == main_deps


def test_tensorflow_pins(tpu):
    pins = {_name(d): d for d in tpu["project"]["dependencies"]}
    assert pins["tensorflow-tpu"] == "tensorflow-tpu==2.20.0"
    assert pins["tf-keras"].startswith("tf-keras==2.20.")
    assert "tensorflow" not in pins


def test_overrides_are_the_main_ones_plus_dropping_tensorflow(main, tpu):
    main_overrides = main["tool"]["uv"]["override-dependencies"]
    tpu_overrides = tpu["tool"]["uv"]["override-dependencies"]
    assert set(tpu_overrides) - set(main_overrides) == {"tensorflow; sys_platform == 'never'"}
    assert set(main_overrides) <= set(tpu_overrides)
    assert tpu["tool"]["uv"]["environments"] == main["tool"]["uv"]["environments"]


def test_the_lock_is_the_pyproject(tpu, tpu_lock):
    # uv records the project's requirements in the lock: an edit of pyproject.toml without
    # `make tpu-lock` shows here
    metadata = tpu_lock["qatflow"]["metadata"]["requires-dist"]
    locked = {m["name"]: m.get("specifier", "") for m in metadata}
    for requirement in tpu["project"]["dependencies"]:
        name = _name(requirement)
        assert name in locked, name
        wanted = requirement[len(re.match(r"[A-Za-z0-9._\-\[\], ]+", requirement).group(0)) :]
        assert locked[name].replace(" ", "") == wanted.replace(" ", ""), name


def test_the_lock_holds_one_tensorflow(tpu, tpu_lock):
    assert "tensorflow" not in tpu_lock  # dropped: tensorflow-tpu installs the same files
    assert tpu_lock["tensorflow-tpu"]["version"] == "2.20.0"
    assert tpu_lock["tfx"]["version"] == "1.21.0"
    assert tpu_lock["tf-keras"]["version"].startswith("2.20.")
    pins = {_name(d): d.split("==")[1] for d in tpu["project"]["dependencies"] if "==" in d}
    assert tpu_lock["libtpu"]["version"] == pins["libtpu"]
    # libtpu 0.0.32 and later lack TPU C API functions TensorFlow 2.20 needs: import aborts
    major, minor, patch = (int(x) for x in pins["libtpu"].split(".")[:3])
    assert (major, minor) == (0, 0) and 14 <= patch <= 31


def test_the_main_lock_stays_on_2_21():
    packages = {p["name"]: p for p in _toml(REPO / "uv.lock")["package"]}
    assert packages["tensorflow"]["version"].startswith("2.21.")
    assert "tensorflow-tpu" not in packages
