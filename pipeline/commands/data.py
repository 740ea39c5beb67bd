"""``qatflow demo-data`` and ``qatflow ingest``: make a dataset, turn a dataset into Examples.

``ingest`` reads the ``data`` and ``runner`` sections of the pipeline config
(``--config``/``--set``); its flags override them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from model_maker.core.data.options import FORMATS
from model_maker.core.errors import UsageError
from pipeline.commands.common import add_config_args, config_from_args
from pipeline.commands.console import hides_native_chatter
from pipeline.config import PipelineConfig, load_config, to_dict

LOG = logging.getLogger("qatflow")


def _split_arg(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(
                f"--split {text!r}: expected NAME=FRACTION[,NAME=FRACTION] or NAME=FILE"
            )
        pairs.append((name.strip(), value.strip()))
    return pairs


def _split_dir_arg(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise UsageError(f"--split-dir {text!r}: expected NAME=DIR, e.g. eval=val")
    return name.strip(), folder.strip()


def parse_splits(values: list[list[tuple[str, str]]]) -> tuple[dict[str, float], dict[str, str]]:
    """``--split`` values as (ratios, files); all fractions or all files, not both."""
    pairs = [p for group in values for p in group]
    ratios: dict[str, float] = {}
    files: dict[str, str] = {}
    for name, value in pairs:
        try:
            ratios[name] = float(value)
        except ValueError:
            files[name] = value
    if ratios and files:
        raise UsageError("--split: give either fractions (train=0.8,eval=0.2) or files, not both")
    return ratios, files


def _cmd_demo_data(args: argparse.Namespace) -> int:
    # deferred: numpy and Pillow, not needed by `qatflow --help` or the other commands
    from model_maker.core.data.demo_data import generate_demo_data

    result = generate_demo_data(
        args.output,
        num_images=args.images,
        seed=args.seed,
        image_size=args.size,
        image_format=args.image_format,
    )
    print(
        f"{result.num_images} images, {result.num_boxes} boxes\n"
        f"images:      {result.images_dir}\nannotations: {result.annotations}"
    )
    return 0


def _apply_flags(args: argparse.Namespace) -> PipelineConfig:
    """The config of ``--config``/``--set`` with the ingest flags on top, validated again."""
    values = to_dict(config_from_args(args))
    data, runner = values["data"], values["runner"]
    for flag in ("format", "input", "annotations"):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.split:
        ratios, files = parse_splits(args.split)
        if files:
            data["split_files"] = files
        else:
            data["split_ratios"], data["split_files"] = ratios, {}
    if args.split_dirs:
        data["split_image_dirs"] = dict(args.split_dirs)
    if args.strict:
        data["strict"] = True
    if args.drop_negatives:
        data["keep_negatives"] = False
    if args.shards is not None:
        data["num_shards"] = args.shards
    if args.rewrite:
        data["rewrite_tfrecords"] = True
    if args.allow_outside_input:
        data["allow_outside_input"] = True
    if args.workers is not None:
        runner["direct_num_workers"] = args.workers
    runner["beam_pipeline_args"] = [*runner["beam_pipeline_args"], *args.beam_args]
    config = load_config(base=values)
    if not config.data.input:
        raise UsageError("ingest: give --input PATH (or data.input in the config)")
    return config


def beam_args_for(direct_num_workers: int, beam_pipeline_args: list[str]) -> list[str]:
    """``beam_pipeline_args`` plus ``--direct_num_workers`` unless they already choose."""
    args = list(beam_pipeline_args)
    if not any(a.startswith(("--direct_num_workers", "--runner")) for a in args):
        args.append(f"--direct_num_workers={direct_num_workers}")
    return args


@hides_native_chatter
def _cmd_ingest(args: argparse.Namespace) -> int:
    config = _apply_flags(args)
    # deferred: Apache Beam and TensorFlow are heavy (seconds to import)
    from model_maker.core.data.ingest import ingest

    # The pipeline's ExampleGen writes its own artifact, so the config leaves data.output
    # empty; this command writes where --output says.
    options = dataclasses.replace(config.data, output=args.output)
    beam_args = beam_args_for(
        config.runner.direct_num_workers, list(config.runner.beam_pipeline_args)
    )
    result = ingest(options, beam_args)
    width = max(len(s) for s in result.splits) + 2
    lines = [f"{'split':<{width}}{'images':>8}{'boxes':>8}"]
    for split in result.splits:
        lines.append(f"{split:<{width}}{result.images[split]:>8}{result.boxes[split]:>8}")
    lines.append(
        f"{'total':<{width}}{sum(result.images.values()):>8}{sum(result.boxes.values()):>8}"
    )
    lines.append("classes: " + ", ".join(f"{c.id}={c.name}" for c in result.label_map.classes))
    counts = result.stats["issue_counts"]
    lines.append(
        "repaired/skipped: "
        + (", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "none")
        + f" (details: {result.stats_path})"
    )
    lines.append(f"output: {result.output}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo-data`` and ``ingest`` to the ``qatflow`` command line."""
    demo = sub.add_parser(
        "demo-data",
        help="write a deterministic synthetic detection dataset (COCO format)",
        description="Shapes (circle, square, triangle) on noisy backgrounds with exact boxes: "
        "DIR/images/ and DIR/annotations.json. The same seed gives the same bytes.",
    )
    demo.add_argument("--output", required=True, metavar="DIR", help="folder to write")
    demo.add_argument("--images", type=int, default=200, metavar="N", help="images (200)")
    demo.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    demo.add_argument("--size", type=int, default=256, metavar="PX", help="image side (256)")
    demo.add_argument(
        "--image-format", choices=("jpeg", "png"), default="jpeg", help="file format (jpeg)"
    )
    demo.set_defaults(func=_cmd_demo_data)

    ingest = sub.add_parser(
        "ingest",
        help="turn COCO, Pascal VOC, TFRecord, class folders or a path,label CSV into an "
        "Examples folder (Beam)",
        description="Run the ExampleGen Beam pipeline: gzip TFRecords per split in "
        "DIR/Split-<name>/, label_map.json, <split>_annotations.json (COCO ground truth) and "
        "stats.json. Detection data: coco, voc, tfrecord. Classification data (one class per "
        "image): folder (ROOT/<class>/<image>, hash split; or one such folder per split with "
        "--split-dir train=train --split-dir eval=val), csv (rows path,label[,split], header "
        "optional, paths relative to the CSV) or tfrecord. Flags override the data and runner "
        "sections of the config.",
    )
    add_config_args(ingest)
    ingest.add_argument(
        "--format",
        choices=FORMATS,
        help="detection: coco, voc, tfrecord; classification: folder, csv, tfrecord",
    )
    ingest.add_argument(
        "--input",
        metavar="PATH",
        help="image folder (coco), dataset folder with annotations/ and images/ (voc), "
        "TFRecord folder (tfrecord), class-per-folder root or the folder holding the split "
        "folders (folder), CSV file of path,label[,split] rows (csv)",
    )
    ingest.add_argument("--annotations", metavar="COCO.json", help="COCO instances JSON")
    ingest.add_argument("--output", required=True, metavar="DIR", help="Examples folder to write")
    ingest.add_argument(
        "--split",
        action="append",
        type=_split_arg,
        default=[],
        metavar="NAME=FRACTION|NAME=FILE",
        help="hash split ratios (train=0.8,eval=0.2; folder without --split-dir, csv rows "
        "without a split) or one split file per split (COCO JSON, VOC id list, TFRecord glob); "
        "repeatable",
    )
    ingest.add_argument(
        "--split-dir",
        dest="split_dirs",
        action="append",
        type=_split_dir_arg,
        default=[],
        metavar="NAME=DIR",
        help="data.split_image_dirs: folder: the folder of one split's class folders, relative "
        "to --input or absolute (--split-dir train=train --split-dir eval=val; the splits are "
        "then these, not --split fractions); coco: the image folder of a split file; "
        "repeatable",
    )
    ingest.add_argument("--strict", action="store_true", help="every repair or skip is an error")
    ingest.add_argument(
        "--drop-negatives", action="store_true", help="drop images without boxes (kept by default)"
    )
    ingest.add_argument(
        "--shards", type=int, metavar="N", help="shards per split (0: Beam decides)"
    )
    ingest.add_argument(
        "--rewrite", action="store_true", help="tfrecord: re-encode records instead of validating"
    )
    ingest.add_argument(
        "--allow-outside-input",
        action="store_true",
        help="read image files outside the dataset folder (absolute or '..' names, symlinks "
        "out); by default such images are skipped and counted as outside_input",
    )
    ingest.add_argument(
        "--workers", type=int, metavar="N", help="DirectRunner worker processes (runner config)"
    )
    ingest.add_argument(
        "--beam-arg",
        dest="beam_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra Beam pipeline argument, e.g. --beam-arg=--runner=DataflowRunner (repeatable)",
    )
    ingest.set_defaults(func=_cmd_ingest)
