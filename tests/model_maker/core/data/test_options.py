"""IngestOptions: which format takes which split settings."""

import pytest

from model_maker.core.data.options import FORMATS, IngestOptions
from model_maker.core.errors import SettingsError


def test_formats():
    assert FORMATS == ("coco", "voc", "tfrecord", "folder", "csv")


def test_folder_takes_split_image_dirs_without_split_files():
    options = IngestOptions("folder", "data", split_image_dirs={"train": "train", "eval": "val"})
    assert dict(options.split_image_dirs) == {"train": "train", "eval": "val"}
    with pytest.raises(SettingsError, match=r"split_image_dirs.eval: give a folder"):
        IngestOptions("folder", "data", split_image_dirs={"train": "train", "eval": " "})
    with pytest.raises(
        SettingsError, match=r"split_image_dirs.my split: 'my split' is not a valid"
    ):
        IngestOptions("folder", "data", split_image_dirs={"my split": "x"})
    with pytest.raises(
        SettingsError, match="folder format takes split_image_dirs .* no split files"
    ):
        IngestOptions("folder", "data", split_files={"train": "t.txt"})


def test_csv_takes_no_split_files_and_no_image_folders():
    assert IngestOptions("csv", "labels.csv").format == "csv"
    with pytest.raises(SettingsError, match="csv format takes a split column in the CSV or"):
        IngestOptions("csv", "labels.csv", split_files={"train": "t.csv"})
    with pytest.raises(SettingsError, match="the csv format takes no image folders"):
        IngestOptions("csv", "labels.csv", split_image_dirs={"train": "t"})


def test_coco_image_folders_still_need_split_files():
    with pytest.raises(SettingsError, match=r"\['val'\] have no COCO JSON in split_files"):
        IngestOptions("coco", "x", split_files={"train": "t.json"}, split_image_dirs={"val": "v"})
    with pytest.raises(SettingsError, match="the voc format takes no image folders"):
        IngestOptions("voc", "x", split_files={"train": "t.txt"}, split_image_dirs={"train": "t"})
