"""``python -m components.kfp_entrypoint``: the command of every task on Kubeflow.

It runs TFX's Kubeflow V2 entrypoint with the task's own arguments; a qatflow usage
error (a GPU or TPU strategy on a node without one, a bad setting) ends the task with one
line and exit code 2, a data error (a missing annotations file) with one line and exit
code 1, a bug keeps its traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXECUTORS = "tests.components.entrypoint_executors"


def _run_task(executor: str, tmp_path: pathlib.Path) -> subprocess.CompletedProcess:
    # an ExecutorInput as KFP's launcher gives it (no artifacts, one output file)
    invocation = {"inputs": {"parameterValues": {}}, "outputs": {"outputFile": str(tmp_path / "o")}}
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "components.kfp_entrypoint",
            "--executor_class_path",
            f"{EXECUTORS}.{executor}",
            "--json_serialized_invocation_args",
            json.dumps(invocation),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("executor", "code", "last_line", "traceback"),
    [
        (
            "UsageErrorExecutor",
            2,
            "qatflow: error: strategy 'gpus': no GPU found (TensorFlow sees none on this machine)",
            False,
        ),
        (
            "DataErrorExecutor",
            1,
            "qatflow: error: gs://bucket/annotations.json: annotation file not found",
            False,
        ),
        ("BugExecutor", 1, "ZeroDivisionError: a bug, not a setting", True),
    ],
)
def test_a_usage_error_ends_the_task_in_one_line_a_bug_keeps_its_traceback(
    executor, code, last_line, traceback, tmp_path
):
    done = _run_task(executor, tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-3000:]
    assert lines[-1] == last_line
    assert ("Traceback (most recent call last)" in done.stderr) is traceback
    assert "kubeflow_v2_run_executor.py" in done.stderr  # TFX's entrypoint ran the executor
