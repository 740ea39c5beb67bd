"""``IngestOptions``: what ExampleGen ingests and how (the pipeline config's ``data`` section).

Beam-free, so the config loads and validates without importing Apache Beam;
:mod:`model_maker.core.data.ingest` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from model_maker.core.errors import SettingsError
from model_maker.core.settings import Settings, check_choice, check_name, check_range

FORMATS = ("coco", "voc", "tfrecord", "folder", "csv")


@dataclass(frozen=True)
class IngestOptions(Settings):
    """What to ingest and how.

    Attributes:
      format: coco, voc, tfrecord, folder or csv (the last two are classification data:
        one class per image, records with ``image/class/label`` and ``image/class/text``).
      input: image folder (coco), dataset folder with annotations/ and images/ (voc),
        TFRecord folder (tfrecord), class-per-folder root (folder; with
        ``split_image_dirs``, the folder the split folders are relative to) or a CSV
        file of ``path,label[,split]`` rows, paths relative to the CSV's folder or
        absolute, header row optional (csv).
      output: folder of the Examples artifact; the pipeline sets it (leave it
        empty in a config), ``qatflow ingest --output`` too.
      annotations: COCO instances JSON (coco without split files).
      split_ratios: split -> fraction for the hash split (by image file name);
        used when no split files are given, by the folder format without
        ``split_image_dirs``, and by csv rows without a split column. The
        assignment hashes each image's file name, so it is the same on every
        machine and for any number of workers.
      split_files: split -> file (COCO JSON per split, VOC id list, TFRecord
        glob); when set, ``split_ratios`` is ignored. Not for folder and csv.
      split_image_dirs: split -> folder. coco: the image folder of a split file
        whose images live in one folder per split (COCO 2017's train2017/ and
        val2017/; a split not listed reads its images from ``input``). folder:
        the folder holding that split's class folders, relative to ``input`` or
        absolute (e.g. ``{train: train, eval: val}``); the splits are exactly
        these and ``split_ratios`` is not used. The class list is the union over
        the splits (sorted names, ids 1..K, the same in every split); a class
        without images in a split is allowed, logged and listed in stats.json
        (``empty_classes``).
      strict: turn every repair (clipped box, converted image) or skip into an error.
      keep_negatives: keep images without boxes as negative examples.
      num_shards: TFRecord shards per split (0 lets Beam decide and keeps memory flat).
      rewrite_tfrecords: re-encode TFRecord input through the image and box checks
        instead of writing validated records unchanged.
      allow_outside_input: read image files that lie outside the dataset folder
        (coco, voc and folder formats: an absolute or ``..`` name, a symlink
        leading out). Off, such an image is skipped and counted (``outside_input``).
    """

    format: str = "coco"
    input: str = ""
    output: str = ""
    annotations: str = ""
    split_ratios: Mapping[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.2})
    split_files: Mapping[str, str] = field(default_factory=dict)
    split_image_dirs: Mapping[str, str] = field(default_factory=dict)
    strict: bool = False
    keep_negatives: bool = True
    num_shards: int = 0
    rewrite_tfrecords: bool = False
    allow_outside_input: bool = False

    def validate(self) -> None:
        check_choice("format", self.format, FORMATS)
        check_range("num_shards", self.num_shards, 0)
        for name in self.split_ratios:
            check_name(f"split_ratios.{name}", name)
        for name in self.split_files:
            check_name(f"split_files.{name}", name)
        for name, folder in self.split_image_dirs.items():
            check_name(f"split_image_dirs.{name}", name)
            if not folder.strip():
                raise SettingsError(f"split_image_dirs.{name}", "give a folder")
        if self.split_files and self.format in ("folder", "csv"):
            takes = (
                "split_image_dirs (split -> folder of class folders) or split_ratios"
                if self.format == "folder"
                else "a split column in the CSV or split_ratios"
            )
            raise SettingsError(
                "split_files", f"the {self.format} format takes {takes}, no split files"
            )
        if not self.split_files:
            if not self.split_ratios:
                raise SettingsError("split_ratios", "give at least one split")
            for name, ratio in self.split_ratios.items():
                check_range(f"split_ratios.{name}", ratio, 0.0, 1.0)
            total = sum(self.split_ratios.values())
            if abs(total - 1.0) > 1e-6:
                raise SettingsError("split_ratios", f"fractions must sum to 1, got {total:g}")
            if self.format == "coco" and self.input and not self.annotations:
                raise SettingsError("annotations", "the coco format needs a COCO JSON file")
        if self.split_image_dirs:
            if self.format not in ("coco", "folder"):
                raise SettingsError(
                    "split_image_dirs",
                    f"the {self.format} format takes no image folders (only the coco format, "
                    "with split files, and the folder format do)",
                )
            unknown = sorted(set(self.split_image_dirs) - set(self.split_files))
            if self.format == "coco" and unknown:
                raise SettingsError(
                    "split_image_dirs",
                    f"{unknown} have no COCO JSON in split_files "
                    f"(splits there: {sorted(self.split_files) or 'none'})",
                )
