"""Fixtures of the detector tests: a tiny Examples folder."""

import pathlib

import pytest

from tests.model_maker.object_detector.tiny_examples import write_tiny_examples


@pytest.fixture(scope="session")
def tiny_examples(tmp_path_factory) -> pathlib.Path:
    """An Examples folder with 6 train and 4 eval images of 2 classes (square, bar)."""
    return write_tiny_examples(tmp_path_factory.mktemp("examples"))
