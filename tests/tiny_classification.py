"""The tiny image-classification pipeline run shared by the e2e and notebook tests.

Class folders with their own train/ and eval/ splits (16 + 8 synthetic JPEGs of
2 classes told apart by colour), EfficientNet-Lite0 at 32 px from random
initialisation, one float epoch and one QAT epoch, three TFLite variants: every
component runs for real in about 2 minutes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess

import numpy as np

from tests.tiny_pipeline import qatflow

CLASSES = ("blue", "red")

TINY = """
name: qatflow-e2e-cls
data:
  input: {data}
  split_image_dirs: {{train: train, eval: eval}}
model:
  task: image_classification
  name: efficientnet_lite0
  image_size: 32
train:
  epochs: 1
  batch_size: 8
qat:
  epochs: 1
  batch_size: 8
  learning_rate: 0.001
convert:
  representative_samples: 4
evaluate:
  latency_runs: 2
runner:
  pipeline_root: {root}
  direct_num_workers: 1
"""


def _write_images(root: pathlib.Path, split: str, per_class: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, name in enumerate(CLASSES):
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (40 + 4 * i, 48, 3), dtype=np.uint8)
            pixels[..., 2 - 2 * index] += 180  # blue or red
            Image.fromarray(pixels).save(folder / f"{name}_{i}.jpg")


@dataclasses.dataclass
class TinyClassification:
    """Paths and output of the finished run."""

    config: pathlib.Path
    root: pathlib.Path
    done: subprocess.CompletedProcess
    latest: dict


def make_tiny_classification(work: pathlib.Path) -> TinyClassification:
    data, root = work / "data", work / "root"
    _write_images(data, "train", 8, seed=1)
    _write_images(data, "eval", 4, seed=2)
    config = work / "tiny.yaml"
    config.write_text(TINY.format(data=data, root=root))
    done = qatflow("run", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    latest = json.loads((root / "latest_run.json").read_text())
    return TinyClassification(config, root, done, latest)
