"""Fixtures of the data tests: the real hymenoptera dataset and small class-folder trees."""

from __future__ import annotations

import pathlib

import pytest
from PIL import Image

from tests.conftest import SHARED


@pytest.fixture(scope="session")
def hymenoptera_dir() -> pathlib.Path:
    """``../shared/datasets/hymenoptera`` (train/ and val/, ants and bees); never copied."""
    path = SHARED / "datasets" / "hymenoptera"
    if not path.is_dir():
        pytest.fail(f"shared dataset missing: {path} (the repo expects ../shared beside it)")
    return path


def _write_class_folders(root: pathlib.Path, counts: dict[str, int]) -> pathlib.Path:
    for level, (name, count) in enumerate(sorted(counts.items())):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 6), (20 + 40 * level,) * 3).save(folder / f"{i}.png")
    return root


@pytest.fixture
def class_folders():
    """``class_folders(root, {name: count})`` writes ``root/<name>/<i>.png`` (8x6, one grey
    level per class; a count of 0 makes an empty class folder) and returns ``root``."""
    return _write_class_folders
