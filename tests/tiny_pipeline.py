"""The tiny end-to-end pipeline run shared by the e2e and notebook tests.

Tiny means 8 synthetic images, one epoch of float training and two short QAT
epochs at the smallest input (128), 4 calibration images; it still goes
through ExampleGen (Beam), Trainer, QATTrainer, TFLiteConverter (float32,
ptq_int8, qat_int8), Evaluator (Beam + LiteRT + pycocotools) and Pusher.

The first run is killed (SIGKILL to its process group) once QAT has written
its first epoch checkpoint; the second run must take ExampleGen and Trainer
from the cache, resume QAT from that checkpoint and finish the pipeline.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import pathlib
import signal
import subprocess
import sys
import time

from tests.checkpoint_state import finished_checkpoints

TINY = """
name: qatflow-e2e
data:
  format: coco
  input: {data}/images
  annotations: {data}/annotations.json
  split_ratios: {{train: 0.5, eval: 0.5}}
model:
  image_size: 128
train:
  epochs: 1
  batch_size: 2
  var_freeze_expr: ""
qat:
  epochs: 2
  batch_size: 1
convert:
  representative_samples: 4
evaluate:
  latency_runs: 3
runner:
  pipeline_root: {root}
  direct_num_workers: 1
"""

#: Train images in the tiny config (8 images, half of them train) / QAT batch 1.
QAT_STEPS_PER_EPOCH = 4


def qatflow(*args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """``qatflow ARGS`` in a subprocess (this interpreter), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@dataclasses.dataclass
class TinyPipeline:
    """Paths and outputs of the killed first run and the resumed second run."""

    config: pathlib.Path
    root: pathlib.Path
    data: pathlib.Path
    killed_stderr: str
    checkpoints_at_kill: list[str]
    resumed: subprocess.CompletedProcess


def qat_checkpoints(root: pathlib.Path) -> list[str]:
    """Names of the finished QAT epoch checkpoints under ``root`` (``ckpt-N``; see
    :mod:`tests.checkpoint_state`: waiting for ``ckpt-N.index`` alone raced the state
    file on an idle machine, and the rerun rightly started QAT over)."""
    finished = []
    for state in glob.glob(os.path.join(root, "checkpoints", "qat-*", "*", "checkpoint")):
        finished += finished_checkpoints(os.path.dirname(state))
    return sorted(finished)


def run_killed_during_qat(config: pathlib.Path, root: pathlib.Path, log: pathlib.Path) -> str:
    """Start ``qatflow run``; SIGKILL it as soon as QAT's first checkpoint exists."""
    with open(log, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        deadline = time.monotonic() + 1500
        try:
            while not qat_checkpoints(root):
                if process.poll() is not None:
                    raise AssertionError(
                        f"the run ended (code {process.returncode}) before QAT checkpointed:\n"
                        + log.read_text()[-3000:]
                    )
                if time.monotonic() > deadline:
                    raise AssertionError("no QAT checkpoint after 25 minutes")
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return log.read_text()


def make_tiny_pipeline(work: pathlib.Path) -> TinyPipeline:
    data, root = work / "data", work / "root"
    made = qatflow("-q", "demo-data", "--output", str(data), "--images", "8", "--seed", "5")
    assert made.returncode == 0, made.stderr
    config = work / "tiny.yaml"
    config.write_text(TINY.format(data=data, root=root))
    killed = run_killed_during_qat(config, root, work / "killed.log")
    at_kill = qat_checkpoints(root)
    resumed = qatflow("run", "--config", str(config))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return TinyPipeline(config, root, data, killed, at_kill, resumed)
