"""Fixtures of the classifier tests: a tiny classification Examples folder."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from model_maker.core.data.labels import LabelClass, LabelMap
from model_maker.core.data.records import DetectionExample, encode_example

#: Solid colour of each class (RGB); the label-map ids are deliberately not 1..K.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}
IDS = {"red": 2, "green": 3, "blue": 7}


def _png(rgb: tuple[int, int, int], height: int, width: int, rng: np.random.Generator) -> bytes:
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = rgb
    noise = rng.integers(-8, 9, size=pixels.shape)
    pixels = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def write_examples(
    root: pathlib.Path, per_split: dict[str, list[str]], seed: int = 0
) -> pathlib.Path:
    """``Split-<name>/data_tfrecord-00000-of-00001.gz`` holding one image per class name
    given, in that order, and ``label_map.json`` (ids red 2, green 3, blue 7)."""
    from tensorflow.io import TFRecordOptions, TFRecordWriter

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    LabelMap(tuple(LabelClass(i, n) for n, i in IDS.items())).save(str(root / "label_map.json"))
    image_id = 0
    for split, names in per_split.items():
        folder = root / f"Split-{split}"
        folder.mkdir(exist_ok=True)
        path = folder / "data_tfrecord-00000-of-00001.gz"
        with TFRecordWriter(str(path), TFRecordOptions(compression_type="GZIP")) as writer:
            for name in names:
                image_id += 1
                height, width = (48, 80) if image_id % 2 else (90, 60)
                example = DetectionExample(
                    encoded=_png(COLOURS[name], height, width, rng),
                    format="png",
                    height=height,
                    width=width,
                    source_id=str(image_id),
                    filename=f"{name}/{image_id}.png",
                    class_label=IDS[name],
                    class_text=name,
                )
                writer.write(encode_example(example))
    return root


@pytest.fixture(scope="session")
def colour_examples(tmp_path_factory) -> pathlib.Path:
    """12 train images (4 per class, classes interleaved) and 6 eval images (2 per class)."""
    return write_examples(
        tmp_path_factory.mktemp("cls_examples"),
        {
            "train": ["red", "green", "blue"] * 4,
            "eval": ["blue", "red", "green", "green", "red", "blue"],
        },
    )
