"""Tiny 4-output detector .tflite files and matching images for the evaluation tests.

The "grid detector" cuts its square input into ``grid x grid`` cells, one
anchor per cell (anchor = the cell), and scores class ``c`` of a cell by how
much colour channel ``c`` fills it: ``sigmoid(gain * (mean(channel c) / 255 - 0.5))``.
So an image with a pure red square covering exactly one cell yields a class-0
detection of that cell with score ~1, and the expected COCO metrics of such
images are known in advance. Box encodings are zeros (box = anchor) unless
``encodings`` is given.

Import as ``tests.model_maker.core.detector_fixtures`` (``tests`` is a namespace
package: the repository root is on sys.path in the project venv).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_maker.core.detection_postprocess import (
    NMSOptions,
    convert_to_tflite,
    tflite_detection_postprocess,
)

COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


def grid_anchors(grid: int) -> np.ndarray:
    """``[grid*grid, 4]`` anchors ``(yc, xc, h, w)`` normalised, row-major."""
    step = 1.0 / grid
    centres = (np.arange(grid, dtype=np.float32) + 0.5) * step
    yc, xc = np.meshgrid(centres, centres, indexing="ij")
    size = np.full(grid * grid, step, np.float32)
    return np.stack([yc.ravel(), xc.ravel(), size, size], axis=1).astype(np.float32)


@dataclass(frozen=True)
class GridDetectorSpec:
    """Shape of a tiny grid detector.

    Attributes:
      image_size: square input size in pixels.
      grid: cells per side (anchors = grid**2).
      num_classes: classes (<= 3, one per colour channel).
      gain: sigmoid gain of the fill score.
      max_detections: N of the post-processing op.
      score_threshold: op score threshold.
      iou_threshold: op NMS IoU threshold.
      extra_conv_layers: 3x3 conv layers (32 channels) whose output is added
        with weight 0: compute that does not change the detections (benchmarks).
    """

    image_size: int = 32
    grid: int = 4
    num_classes: int = 2
    gain: float = 20.0
    max_detections: int = 10
    score_threshold: float = 0.01
    iou_threshold: float = 0.5
    extra_conv_layers: int = 0

    @property
    def nms(self) -> NMSOptions:
        """The op's N and thresholds."""
        return NMSOptions(self.max_detections, self.score_threshold, self.iou_threshold)


def _serving_function(spec: GridDetectorSpec, encodings: np.ndarray | None, with_nms: bool):
    import tensorflow as tf

    anchors = grid_anchors(spec.grid)
    num_anchors = anchors.shape[0]
    cell = spec.image_size // spec.grid
    enc = np.zeros((1, num_anchors, 4), np.float32) if encodings is None else encodings
    enc = np.asarray(enc, np.float32).reshape(1, num_anchors, 4)
    rng = np.random.default_rng(0)
    kernels = [
        tf.constant(rng.normal(0, 0.1, (3, 3, 3 if i == 0 else 32, 32)).astype(np.float32))
        for i in range(spec.extra_conv_layers)
    ]

    @tf.function(input_signature=[tf.TensorSpec([1, spec.image_size, spec.image_size, 3])])
    def serve(images):
        pooled = tf.nn.avg_pool2d(images / 255.0, cell, cell, "VALID")  # [1, G, G, 3]
        logits = spec.gain * (pooled[..., : spec.num_classes] - 0.5)
        if spec.extra_conv_layers:
            x = images / 255.0
            for kernel in kernels:
                x = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME"))
            # min(min pixel, 0) is 0 for every image but not a constant the converter can fold.
            logits += tf.minimum(tf.reduce_min(images), 0.0) * tf.reduce_mean(x)
        scores = tf.reshape(tf.sigmoid(logits), [1, num_anchors, spec.num_classes])
        # Keep the encodings in the graph as a function of the input, so that
        # quantisation sees a real tensor (constant * 0 + constant).
        box_encodings = tf.constant(enc) + 0.0 * tf.reduce_mean(pooled)
        if not with_nms:
            return {"box_encodings": box_encodings, "class_scores": scores}
        return tflite_detection_postprocess(
            box_encodings,
            scores,
            tf.constant(anchors),
            num_classes=spec.num_classes,
            nms=spec.nms,
        )

    return serve.get_concrete_function()


def build_grid_detector(
    spec: GridDetectorSpec = GridDetectorSpec(),
    *,
    int8: bool = False,
    with_nms: bool = True,
    encodings: np.ndarray | None = None,
    seed: int = 0,
) -> bytes:
    """The TFLite flatbuffer of a grid detector.

    Args:
      spec: sizes and op attributes.
      int8: full-integer PTQ with a uint8 input (representative data: random
        images with coloured cells).
      with_nms: include the post-processing op; false returns the raw outputs
        ``box_encodings [1, A, 4]`` and ``class_scores [1, A, C]``.
      encodings: constant box encodings ``[A, 4]`` (default zeros).
      seed: seed of the representative data.
    """
    import tensorflow as tf

    fn = _serving_function(spec, encodings, with_nms)
    if not int8:
        return convert_to_tflite(fn)
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(16):
            image, _ = random_grid_image(rng, spec, spec.image_size, spec.image_size)
            yield [image[None].astype(np.float32)]

    return convert_to_tflite(
        fn, representative_dataset=representative, inference_input_type=tf.uint8
    )


def random_grid_image(
    rng: np.random.Generator, spec: GridDetectorSpec, height: int, width: int, max_objects: int = 3
) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """A black ``height x width`` RGB image with coloured squares on the model's cell grid.

    The image is scaled onto the model input by ``scale = image_size / max(h, w)``
    (resize-and-pad), so a cell of the model is ``cell / scale`` image pixels.
    ``height`` and ``width`` must be multiples of that size.

    Returns:
      (image uint8 [h, w, 3], [(class_id 0-based, [x, y, w, h] pixels)]).
    """
    scale = spec.image_size / max(height, width)
    cell_px = spec.image_size / spec.grid / scale
    rows, cols = round(height / cell_px), round(width / cell_px)
    image = np.zeros((height, width, 3), np.uint8)
    objects = []
    count = int(rng.integers(1, max_objects + 1))
    cells = rng.choice(rows * cols, size=min(count, rows * cols), replace=False)
    for index in cells:
        r, c = divmod(int(index), cols)
        cls = int(rng.integers(0, spec.num_classes))
        y0, x0 = round(r * cell_px), round(c * cell_px)
        y1, x1 = round((r + 1) * cell_px), round((c + 1) * cell_px)
        image[y0:y1, x0:x1] = COLOURS[cls]
        objects.append((cls, [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]))
    return image, objects


def write_image_dataset(
    directory: pathlib.Path,
    count: int,
    spec: GridDetectorSpec = GridDetectorSpec(),
    *,
    sizes: tuple[tuple[int, int], ...] = ((32, 32), (32, 64), (64, 32)),
    seed: int = 0,
) -> tuple[pathlib.Path, pathlib.Path, list[tuple[np.ndarray, int]]]:
    """PNG images and their COCO ground truth (category ids = class + 1).

    Returns:
      (images folder, annotations JSON path, [(image, image_id)]).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    images_dir = directory / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    gt = {
        "images": [],
        "annotations": [],
        "categories": [{"id": c + 1, "name": f"class{c}"} for c in range(spec.num_classes)],
    }
    out = []
    for image_id in range(1, count + 1):
        height, width = sizes[(image_id - 1) % len(sizes)]
        image, objects = random_grid_image(rng, spec, height, width)
        name = f"img{image_id:04d}.png"
        Image.fromarray(image).save(images_dir / name)
        gt["images"].append({"id": image_id, "file_name": name, "height": height, "width": width})
        for cls, bbox in objects:
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
        out.append((image, image_id))
    annotations = directory / "annotations.json"
    annotations.write_text(json.dumps(gt), encoding="utf-8")
    return images_dir, annotations, out


def image_key(image: np.ndarray) -> str:
    """Content key of a decoded image (how :class:`LookupDetector` recognises it)."""
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


@dataclass(frozen=True)
class LookupDetector:
    """A picklable fake detector returning hand-made detections per image content.

    Attributes:
      table: ``image_key(image)`` -> ``[(class 0-based, [ymin, xmin, ymax, xmax] px, score)]``.
    """

    table: tuple[tuple[str, tuple[tuple[int, tuple[float, ...], float], ...]], ...]

    def __call__(self) -> LookupDetector:  # its own factory
        return self

    def detect(self, image: np.ndarray):
        from model_maker.core.litert_detector import Detections

        found = dict(self.table).get(image_key(image), ())
        return Detections(
            np.array([b for _, b, _ in found], np.float32).reshape(-1, 4),
            np.array([c for c, _, _ in found], np.int32),
            np.array([s for _, _, s in found], np.float32),
        )


def write_records(path: pathlib.Path, images_dir: pathlib.Path, annotations: pathlib.Path) -> None:
    """A gzipped TFRecord of the Examples contract for the images of a COCO file."""
    import tensorflow as tf

    from model_maker.core.data.records import DetectionExample, encode_example

    gt = json.loads(annotations.read_text(encoding="utf-8"))
    by_image: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for image in gt["images"]:
            h, w = image["height"], image["width"]
            anns = by_image.get(image["id"], [])
            boxes = tuple(
                (a["bbox"][1] / h, a["bbox"][0] / w, (a["bbox"][1] + a["bbox"][3]) / h,
                 (a["bbox"][0] + a["bbox"][2]) / w)
                for a in anns
            )  # fmt: skip
            example = DetectionExample(
                encoded=(images_dir / image["file_name"]).read_bytes(),
                format="png",
                height=h,
                width=w,
                source_id=str(image["id"]),
                filename=image["file_name"],
                boxes=boxes,
                labels=tuple(a["category_id"] for a in anns),
                texts=tuple(f"class{a['category_id'] - 1}" for a in anns),
            )
            writer.write(encode_example(example))


def write_examples_artifact(root: pathlib.Path, count: int = 6, seed: int = 3) -> pathlib.Path:
    """An Examples artifact folder: Split-eval records, label_map.json, eval_annotations.json."""
    spec = GridDetectorSpec()
    raw = root / "raw"
    images_dir, annotations, _ = write_image_dataset(raw, count, spec, seed=seed)
    uri = root / "examples"
    write_records(uri / "Split-eval" / "data_tfrecord-00000-of-00001.gz", images_dir, annotations)
    labels = {str(c + 1): f"class{c}" for c in range(spec.num_classes)}
    (uri / "label_map.json").write_text(json.dumps(labels), encoding="utf-8")
    (uri / "eval_annotations.json").write_text(annotations.read_text(), encoding="utf-8")
    return uri


def write_tflite_artifact(
    uri: pathlib.Path, variants: dict[str, bool] | None = None
) -> pathlib.Path:
    """A TFLite artifact folder of grid detectors (variant -> int8), labels.txt, manifest.json."""
    spec = GridDetectorSpec()
    variants = variants if variants is not None else {"float32": False, "ptq_int8": True}
    uri.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, int8 in variants.items():
        content = build_grid_detector(spec, int8=int8)
        (uri / f"{name}.tflite").write_bytes(content)
        entries.append(
            {
                "variant": name,
                "file": f"{name}.tflite",
                "bytes": len(content),
                "input": {"name": "images", "dtype": "uint8" if int8 else "float32"},
                "outputs": ["boxes", "classes", "scores", "num_detections"],
                "with_nms": True,
            }
        )
    (uri / "labels.txt").write_text(
        "".join(f"class{c}\n" for c in range(spec.num_classes)), encoding="utf-8"
    )
    (uri / "manifest.json").write_text(json.dumps({"variants": entries}), encoding="utf-8")
    return uri


@dataclass(frozen=True)
class CountingFactory:
    """Wraps a detector factory and appends one line to ``log_path`` per detector created."""

    inner: Any
    log_path: str

    def __call__(self):
        import os

        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        return self.inner()


@dataclass(frozen=True)
class SlowDetector:
    """Wraps a detector and sleeps ``image_seconds`` before each detection."""

    inner: Any
    image_seconds: float

    def detect(self, image):
        import time

        time.sleep(self.image_seconds)
        return self.inner.detect(image)


@dataclass(frozen=True)
class SlowFactory:
    """A factory that takes ``load_seconds`` to load a detector that is slow per image."""

    inner: Any
    load_seconds: float
    image_seconds: float

    def __call__(self):
        import time

        time.sleep(self.load_seconds)
        return SlowDetector(self.inner(), self.image_seconds)
