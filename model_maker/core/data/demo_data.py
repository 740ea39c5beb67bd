"""A deterministic synthetic detection dataset in COCO format, for the demo and the tests.

Three classes of shapes (circle, square, triangle), 1..4 per image, drawn
without overlap on a noisy gradient background. Each box is the tight bounds of
the drawn shape's pixels (``[x, y, w, h]`` in pixel edges), so it is exact.
Image ``i`` depends only on ``(seed, i)``: the same seed gives the same bytes,
and a larger dataset starts with the images of a smaller one.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from model_maker.core.errors import UsageError

CLASSES = ("circle", "square", "triangle")
IMAGES_DIR = "images"
ANNOTATIONS_FILE = "annotations.json"


@dataclass(frozen=True)
class DemoDataResult:
    """Where the dataset was written.

    Attributes:
      images_dir: folder of the images.
      annotations: the COCO instances JSON.
      num_images: images written.
      num_boxes: boxes written.
    """

    images_dir: str
    annotations: str
    num_images: int
    num_boxes: int


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    start, end = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.0) / 2.0
    image = start[None, None, :] * (1 - t[..., None]) + end[None, None, :] * t[..., None]
    image += rng.normal(0.0, rng.uniform(4, 18), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw(rng: np.random.Generator, shape: str, x: int, y: int, side: int) -> Image.Image:
    mask = Image.new("L", (x + side + 1, y + side + 1), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse((x, y, x + side - 1, y + side - 1), fill=255)
    elif shape == "square":
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=255)
    else:
        apex = x + int(rng.integers(0, side))
        if rng.random() < 0.5:
            points = [(apex, y), (x, y + side - 1), (x + side - 1, y + side - 1)]
        else:
            points = [(x, y), (x + side - 1, y), (apex, y + side - 1)]
        draw.polygon(points, fill=255)
    return mask


def _colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    # A colour far from the background's mean, so every shape is visible.
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(50):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - mean).sum() > 200:
            return colour.astype(np.uint8)
    return (255 - mean).astype(np.uint8)


def render_image(seed: int, index: int, size: int = 256, max_objects: int = 4):
    """Image ``index`` of dataset ``seed``: (uint8 HxWx3 array, [(class, [x, y, w, h])])."""
    rng = np.random.default_rng([seed, index])
    image = _background(rng, size)
    placed: list[tuple[int, int, int]] = []
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(30):
            side = int(rng.integers(size // 5, size // 2 + 1))
            x = int(rng.integers(0, size - side + 1))
            y = int(rng.integers(0, size - side + 1))
            gap = 4
            if all(
                x + side + gap <= px
                or px + ps + gap <= x
                or y + side + gap <= py
                or py + ps + gap <= y
                for px, py, ps in placed
            ):
                break
        else:
            continue  # no room left for another shape
        placed.append((x, y, side))
        shape = CLASSES[int(rng.integers(0, len(CLASSES)))]
        mask = np.zeros((size, size), dtype=bool)
        drawn = np.asarray(_draw(rng, shape, x, y, side), dtype=bool)[:size, :size]
        mask[: drawn.shape[0], : drawn.shape[1]] = drawn
        image[mask] = _colour(rng, image)
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        objects.append((shape, [x0, y0, x1 - x0, y1 - y0]))
    return image, objects


def generate_demo_data(
    output: str | os.PathLike,
    num_images: int = 200,
    seed: int = 0,
    image_size: int = 256,
    image_format: str = "jpeg",
) -> DemoDataResult:
    """Write ``output/images/*`` and ``output/annotations.json`` (COCO, category ids 1..3)."""
    if num_images < 1:
        raise UsageError(f"demo data: --images must be at least 1, got {num_images}")
    if image_size < 64:
        raise UsageError(f"demo data: image size must be at least 64, got {image_size}")
    if image_format not in ("jpeg", "png"):
        raise UsageError(f"demo data: image format {image_format!r}: expected jpeg or png")
    output = os.fspath(output)
    images_dir = os.path.join(output, IMAGES_DIR)
    os.makedirs(images_dir, exist_ok=True)
    suffix = "jpg" if image_format == "jpeg" else "png"
    categories = [{"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES, 1)]
    ids = {n: i for i, n in enumerate(CLASSES, 1)}
    images, annotations = [], []
    quiet = not logging.getLogger("qatflow").isEnabledFor(logging.INFO)
    for index in tqdm(range(num_images), desc="demo images", unit="img", disable=quiet):
        pixels, objects = render_image(seed, index, image_size)
        image_id = index + 1
        file_name = f"{image_id:06d}.{suffix}"
        save = {"format": "JPEG", "quality": 95} if image_format == "jpeg" else {"format": "PNG"}
        Image.fromarray(pixels).save(os.path.join(images_dir, file_name), **save)
        images.append(
            {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
        )
        for shape, bbox in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[shape],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    data = {
        "info": {"description": f"qatflow synthetic shapes, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = os.path.join(output, ANNOTATIONS_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    return DemoDataResult(images_dir, path, len(images), len(annotations))
