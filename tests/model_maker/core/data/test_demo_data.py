import hashlib
import json

import numpy as np
from PIL import Image

from model_maker.core.data.demo_data import CLASSES, generate_demo_data, render_image


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.*"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_demo_data(tmp_path / "a", num_images=4, seed=3)
    generate_demo_data(tmp_path / "b", num_images=4, seed=3)
    generate_demo_data(tmp_path / "c", num_images=4, seed=4)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert a.num_images == 4 and 4 <= a.num_boxes <= 16


def test_coco_layout_and_classes(tmp_path):
    result = generate_demo_data(tmp_path, num_images=6, seed=1, image_format="png")
    data = json.loads(open(result.annotations).read())
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    assert [c["id"] for c in data["categories"]] == [1, 2, 3]
    for image in data["images"]:
        assert Image.open(tmp_path / "images" / image["file_name"]).size == (256, 256)
    assert all(
        1 <= sum(a["image_id"] == i["id"] for a in data["annotations"]) <= 4 for i in data["images"]
    )


def test_boxes_are_the_tight_bounds_of_the_shapes():
    for index in range(5):
        pixels, objects = render_image(seed=7, index=index)
        for _, (x, y, w, h) in objects:
            assert w >= 256 // 5 - 1 and h >= 256 // 5 - 1
            inside = pixels[y : y + h, x : x + w].reshape(-1, 3)
            # The shape's flat colour is the commonest inside its box (the background is noisy).
            values, counts = np.unique(inside, axis=0, return_counts=True)
            colour = tuple(values[counts.argmax()])
            box = pixels[y : y + h, x : x + w]
            is_shape = np.all(box == colour, axis=-1)
            # Tight: every edge row and column of the box touches the shape ...
            assert is_shape[0].any() and is_shape[-1].any()
            assert is_shape[:, 0].any() and is_shape[:, -1].any()
            ring = np.concatenate(
                [
                    pixels[max(y - 1, 0), x : x + w] if y > 0 else np.empty((0, 3), np.uint8),
                    pixels[y + h, x : x + w] if y + h < 256 else np.empty((0, 3), np.uint8),
                    pixels[y : y + h, x - 1] if x > 0 else np.empty((0, 3), np.uint8),
                    pixels[y : y + h, x + w] if x + w < 256 else np.empty((0, 3), np.uint8),
                ]
            )
            # ... and no shape pixel lies just outside it.
            assert not np.all(ring == colour, axis=-1).any()
