"""A tiny Examples artifact folder (the ExampleGen contract) for the detector and Trainer tests.

Loaded by path from the conftest files (tests have no packages).
"""

from __future__ import annotations

import io
import json
import pathlib

import numpy as np
from PIL import Image

from model_maker.core.data.records import DetectionExample, encode_example

LABELS = {1: "square", 2: "bar"}


def _image(rng: np.random.Generator, height: int, width: int, boxes_px, labels) -> bytes:
    pixels = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    for (y0, x0, y1, x1), label in zip(boxes_px, labels, strict=True):
        colour = (230, 40, 40) if label == 1 else (40, 40, 230)
        pixels[y0:y1, x0:x1] = colour
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_tiny_examples(
    root: pathlib.Path, splits=(("train", 6), ("eval", 4)), seed=0
) -> pathlib.Path:
    """Write ``Split-<name>/data_tfrecord-00000-of-00001.gz``, label_map.json and
    ``<split>_annotations.json`` with red squares (class 1) and blue bars (class 2)."""
    from tensorflow.io import TFRecordOptions, TFRecordWriter

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_map.json").write_text(json.dumps({str(k): v for k, v in LABELS.items()}))
    image_id = 0
    for split, count in splits:
        folder = root / f"Split-{split}"
        folder.mkdir(exist_ok=True)
        coco = {
            "images": [],
            "annotations": [],
            "categories": [{"id": k, "name": v} for k, v in LABELS.items()],
        }
        path = folder / "data_tfrecord-00000-of-00001.gz"
        with TFRecordWriter(str(path), TFRecordOptions(compression_type="GZIP")) as writer:
            for _ in range(count):
                image_id += 1
                height, width = (160, 240) if image_id % 2 else (200, 150)
                boxes_px, labels = [], []
                # one square and one bar per image, at random places
                s = int(rng.integers(40, 70))
                y, x = int(rng.integers(0, height - s)), int(rng.integers(0, width // 2 - s // 2))
                boxes_px.append((y, x, y + s, x + s))
                labels.append(1)
                bh, bw = int(rng.integers(20, 35)), int(rng.integers(50, 70))
                y = int(rng.integers(0, height - bh))
                x = int(rng.integers(width // 2, width - bw))
                boxes_px.append((y, x, y + bh, x + bw))
                labels.append(2)
                example = DetectionExample(
                    encoded=_image(rng, height, width, boxes_px, labels),
                    format="jpeg",
                    height=height,
                    width=width,
                    source_id=str(image_id),
                    boxes=tuple(
                        (y0 / height, x0 / width, y1 / height, x1 / width)
                        for y0, x0, y1, x1 in boxes_px
                    ),
                    labels=tuple(labels),
                    texts=tuple(LABELS[label] for label in labels),
                    areas=tuple(float((y1 - y0) * (x1 - x0)) for y0, x0, y1, x1 in boxes_px),
                    is_crowd=(0,) * len(labels),
                )
                writer.write(encode_example(example))
                coco["images"].append(
                    {
                        "id": image_id,
                        "width": width,
                        "height": height,
                        "file_name": f"{image_id}.jpg",
                    }
                )
                for (y0, x0, y1, x1), label in zip(boxes_px, labels, strict=True):
                    coco["annotations"].append(
                        {
                            "id": len(coco["annotations"]) + 1,
                            "image_id": image_id,
                            "category_id": label,
                            "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "area": (x1 - x0) * (y1 - y0),
                            "iscrowd": 0,
                        }
                    )
        (root / f"{split}_annotations.json").write_text(json.dumps(coco))
    return root
