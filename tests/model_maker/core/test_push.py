"""Versioned pushes: atomic (a killed push leaves no version), idempotent, refuses bad names."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from model_maker.core.push import MARKER, fingerprint_files, list_versions, push_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture()
def files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "qat_int8.tflite").write_bytes(b"\x00model bytes")
    (src / "labels.txt").write_text("raccoon\n")
    return {name: str(src / name) for name in ("qat_int8.tflite", "labels.txt")}


def _entries(dest):
    return sorted(os.listdir(dest)) if os.path.isdir(dest) else []


def test_push_writes_a_version_and_a_rerun_pushes_nothing(tmp_path, files):
    dest = str(tmp_path / "serving")
    first = push_files(files, dest, metadata={"run": "r1"})
    assert first.pushed and first.version == 1
    assert _entries(dest) == ["v1"]
    assert sorted(os.listdir(first.path)) == sorted([*files, MARKER])
    with open(os.path.join(first.path, "qat_int8.tflite"), "rb") as fh:
        assert fh.read() == b"\x00model bytes"
    record = json.loads(open(os.path.join(first.path, MARKER)).read())
    assert record["fingerprint"] == fingerprint_files(files) == first.fingerprint
    assert record["run"] == "r1" and record["files"] == sorted(files)

    again = push_files(files, dest)
    assert not again.pushed and again.version == 1 and "already pushed" in again.reason
    assert _entries(dest) == ["v1"]

    with open(files["labels.txt"], "w") as fh:
        fh.write("raccoon\ncat\n")
    changed = push_files(files, dest)
    assert changed.pushed and changed.version == 2
    assert list_versions(dest) == {1: first.fingerprint, 2: changed.fingerprint}


def test_killed_push_leaves_no_version_and_rerun_pushes_exactly_one(tmp_path, files):
    dest = str(tmp_path / "serving")
    script = textwrap.dedent(
        f"""
        import os
        from model_maker.core.push import push_files
        push_files({files!r}, {dest!r}, before_rename=lambda staging: os._exit(17))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True)
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]
    entries = _entries(dest)
    assert not [e for e in entries if e.startswith("v")]
    assert len(entries) == 1 and entries[0].startswith(".staging-")  # staged, never renamed
    assert list_versions(dest) == {}

    rerun = push_files(files, dest)
    assert rerun.pushed and rerun.version == 1
    assert _entries(dest) == ["v1"]  # the stale staging folder is gone
    assert push_files(files, dest).pushed is False
    assert list_versions(dest) == {1: rerun.fingerprint}


def test_incomplete_version_folder_is_not_a_version(tmp_path, files):
    dest = tmp_path / "serving"
    (dest / "v1").mkdir(parents=True)  # e.g. a partial copy on an object store
    result = push_files(files, str(dest))
    assert result.version == 2 and list_versions(str(dest)) == {2: result.fingerprint}


@pytest.mark.parametrize("name", ["", "a/b", MARKER])
def test_bad_file_names_are_refused(tmp_path, files, name):
    with pytest.raises(ValueError):
        push_files({name: files["labels.txt"]}, str(tmp_path / "d"))


def test_push_through_tf_gfile_url(files):
    import uuid

    dest = f"ram://push-test-{uuid.uuid4().hex}/serving"
    first = push_files(files, dest)
    assert first.pushed and first.version == 1 and first.path == dest + "/v1"
    assert list_versions(dest) == {1: first.fingerprint}
    assert push_files(files, dest).pushed is False
