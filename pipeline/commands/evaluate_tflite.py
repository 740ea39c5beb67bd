"""``qatflow evaluate-tflite``: score any detector or classifier TFLite file.

Detectors (4 outputs, or raw + anchors): the same evaluator as the pipeline's
Evaluator (LiteRT interpreter in a Beam pipeline, pycocotools COCOeval), so
third-party models are scored exactly like qatflow's own variants. Images are
matched to the COCO annotations by ``file_name``; predicted class ``k``
(0-based) is category id ``k + 1``.

Classifiers (one ``[1, C]`` output): ``--images`` is a folder of class
folders (``DIR/<class name>/<image>``), matched to the model's classes by
name (its TFLite metadata labels, ``--labels``, or the sorted folder names);
top-1, top-5, per-class accuracy, confusion matrix, macro-F1, as the Evaluator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import DataError, SettingsError, UsageError
from pipeline.commands.console import hides_native_chatter

LOG = logging.getLogger("qatflow")


def _variant_name(model: str) -> str:
    # The variant's name becomes file names and the blessing's candidate.
    return re.sub(r"[^\w.-]", "_", os.path.splitext(os.path.basename(model))[0])


@hides_native_chatter
def _cmd_evaluate_tflite(args: argparse.Namespace) -> int:
    nms = _nms_options(args)
    for flag, path, kind in (
        ("--model", args.model, os.path.isfile),
        ("--images", args.images, os.path.isdir),
    ):
        if not kind(path):
            raise UsageError(f"{flag} {path}: not found")
    if args.latency_runs < 0:
        raise UsageError(f"--latency-runs must be 0 or more, got {args.latency_runs}")
    # deferred: LiteRT is heavy; usage errors above come first
    from model_maker.image_classifier.evaluator import is_classifier_file

    if is_classifier_file(args.model):
        return _evaluate_classifier(args)
    if args.labels:
        raise UsageError(
            "--labels is for classifiers; a detector's classes come from --annotations"
        )
    if not args.annotations:
        raise UsageError("--annotations GT.json is needed to score a detector")
    if not os.path.isfile(args.annotations):
        raise UsageError(f"--annotations {args.annotations}: not found")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    # deferred: numpy, pycocotools, LiteRT and Beam are heavy; usage errors above come first
    from model_maker.core.coco_metrics import PER_CLASS_PREFIX, SUMMARY_KEYS
    from model_maker.core.evaluation import (
        BeamOptions,
        BlessingRule,
        EvalSource,
        Variant,
        check_label_names,
        evaluate_variants,
        model_label_names,
    )
    from model_maker.core.litert_detector import TFLiteDetectorFactory

    try:
        with open(args.annotations, encoding="utf-8") as fh:
            ground_truth = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{args.annotations}: not valid JSON ({exc})") from None
    source = EvalSource.from_image_folder(ground_truth, args.images)
    data_names = {
        int(c["id"]): str(c.get("name", c["id"])) for c in ground_truth.get("categories") or []
    }
    # A file with TFLite metadata names its classes; they must match the annotations'.
    model_names = model_label_names(os.path.abspath(args.model))
    for line in check_label_names("model", model_names, data_names):
        LOG.warning("%s (metrics use the annotations' ids)", line)
    name = _variant_name(args.model)
    factory = TFLiteDetectorFactory(
        os.path.abspath(args.model),
        anchors_file=os.path.abspath(args.anchors) if args.anchors else None,
        nms=nms,
    )
    factory()  # fail early, in this process, on a model that cannot be loaded
    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(args.model)), f"{name}-eval"
    )
    result = evaluate_variants(
        [Variant(name, factory, os.path.abspath(args.model))],
        source,
        ground_truth,
        output,
        rule=BlessingRule(candidate=name),
        latency_runs=args.latency_runs,
        beam=BeamOptions(num_workers=args.workers),
    )
    (entry,) = result.variants
    metrics = entry["metrics"]
    print(f"{name}: {entry['num_images']} images, {entry['num_detections']} detections")
    if entry["bytes"] is not None:
        print(f"size: {entry['bytes'] / 1024:.1f} KB")
    if entry["latency"]:
        lat = entry["latency"]
        print(f"latency: median {lat['median_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms (1 thread)")
    print(f"{'metric':<24} {'value':>8}")
    for key in [*SUMMARY_KEYS, *sorted(k for k in metrics if k.startswith(PER_CLASS_PREFIX))]:
        value = metrics[key]
        print(f"{key:<24} {'n/a' if value < 0 else f'{value:.4f}':>8}")
    print(f"reports: {output}/metrics.json, report.md, report.html")
    return 0


def _evaluate_classifier(args: argparse.Namespace) -> int:
    if args.annotations:
        raise UsageError(
            "--annotations: this model is a classifier (one [1, C] output); it is scored on "
            "class folders: --images DIR with DIR/<class name>/<image>"
        )
    if args.anchors:
        raise UsageError("--anchors is for raw detectors; this model is a classifier")
    labels = None
    if args.labels:
        try:
            with open(args.labels, encoding="utf-8") as fh:
                labels = [line.strip() for line in fh if line.strip()]
        except OSError as exc:
            raise UsageError(f"--labels {args.labels}: {exc.strerror}") from None
    # deferred: TensorFlow and LiteRT are heavy; usage errors above come first
    from model_maker.core.metrics_document import (
        CLASSIFICATION_KEYS,
        PER_CLASS_ACCURACY_PREFIX,
    )
    from model_maker.image_classifier.evaluator import evaluate_image_folder

    name = _variant_name(args.model)
    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(args.model)), f"{name}-eval"
    )
    result, skipped = evaluate_image_folder(
        os.path.abspath(args.model),
        args.images,
        output,
        variant=name,
        labels=labels,
        latency_runs=args.latency_runs,
    )
    (entry,) = result.variants
    metrics = entry["metrics"]
    print(f"{name}: classifier, {entry['num_images']} images ({len(skipped)} skipped)")
    print(f"size: {entry['bytes'] / 1024:.1f} KB, input {entry['input_dtype']}")
    if entry["latency"]:
        lat = entry["latency"]
        print(f"latency: median {lat['median_ms']:.2f} ms, p90 {lat['p90_ms']:.2f} ms (1 thread)")
    print(f"{'metric':<24} {'value':>8}")
    keys = [k for k in CLASSIFICATION_KEYS if k in metrics]
    keys += sorted(k for k in metrics if k.startswith(PER_CLASS_ACCURACY_PREFIX))
    for key in keys:
        print(f"{key:<24} {metrics[key]:>8.4f}")
    print(f"reports: {output}/metrics.json, report.md, report.html (confusion matrix inside)")
    return 0


def _nms_options(args: argparse.Namespace) -> NMSOptions:
    """The raw-model post-processing flags as :class:`NMSOptions`, a bad one named as a flag."""
    try:
        return NMSOptions(
            max_detections=args.max_detections,
            score_threshold=args.score_threshold,
            iou_threshold=args.iou_threshold,
            pre_nms_top_k=args.pre_nms_top_k,
        )
    except SettingsError as exc:
        flag = "--" + exc.key.replace("_", "-")
        raise UsageError(f"{flag} {getattr(args, exc.key)}: {exc.reason}") from None


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate-tflite",
        help="metrics of any detector or classifier .tflite file on a folder of images",
        description="Evaluate a TFLite file with the pipeline's evaluator. A detector (4 "
        "outputs: boxes, classes, scores, num_detections; or raw box encodings and class "
        "scores with --anchors) is scored on images with COCO annotations (LiteRT + "
        "pycocotools). A classifier (one [1, C] output) is scored on class folders "
        "(--images DIR/<class name>/<image>): top-1, top-5, per-class accuracy, confusion "
        "matrix, macro-F1.",
    )
    parser.add_argument("--model", required=True, metavar="M.tflite", help="the TFLite model")
    parser.add_argument(
        "--annotations", metavar="GT.json", help="detectors: COCO instances JSON (required)"
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="DIR",
        help="detectors: folder of the annotated images; classifiers: folder of class folders",
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="classifiers without TFLite metadata: class names, one per line in output order "
        "(default: the sorted folder names)",
    )
    parser.add_argument(
        "--output", metavar="DIR", help="reports folder (default: <model>-eval beside the model)"
    )
    parser.add_argument(
        "--anchors",
        metavar="FILE",
        help="anchors [A, 4] (yc, xc, h, w normalised; .npy or CSV) for raw models without NMS",
    )
    parser.add_argument("--workers", type=int, default=1, help="Beam worker processes")
    parser.add_argument(
        "--latency-runs", type=int, default=20, help="timed invocations (0: skip latency)"
    )
    nms = NMSOptions()
    parser.add_argument(
        "--max-detections",
        type=int,
        default=nms.max_detections,
        help="raw models: detections kept after NMS (%(default)s)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=nms.score_threshold,
        help="raw models: minimum class score (%(default)s)",
    )
    parser.add_argument(
        "--iou-threshold",
        type=float,
        default=nms.iou_threshold,
        help="raw models: NMS IoU threshold (%(default)s)",
    )
    parser.add_argument(
        "--pre-nms-top-k",
        type=int,
        default=nms.pre_nms_top_k,
        help="raw models: only the K anchors with the best scores go to NMS; 0: all "
        "(%(default)s, as the exported files)",
    )
    parser.set_defaults(func=_cmd_evaluate_tflite)
