"""Run TFLite files through the real MediaPipe Tasks runtime and print what it sees, as JSON.

Runs INSIDE the MediaPipe side environment (``make mediapipe`` builds
``.tools/mediapipe-venv``: mediapipe 0.10.14 with its own protobuf 4), never in
qatflow's venv, and imports nothing from qatflow: standard library, mediapipe
and numpy only. The tests call it in a subprocess::

    .tools/mediapipe-venv/bin/python tools/mediapipe_check.py \\
        --task object_detector --model a.tflite --model b.tflite --image 1.png --image 2.png

For each model it prints (one JSON document on stdout):

* ``metadata``: MediaPipe's metadata reader (``MetadataDisplayer``) on the file:
  the metadata as JSON, the packed files, the label file's lines, and the
  input normalisation (mean/std) of the first input tensor;
* ``results``: per image, ``ObjectDetector`` detections (pixel boxes
  ``[x, y, width, height]`` in the image, categories with index, score and name
  from the embedded labels) or ``ImageClassifier`` categories;
* ``error``: the runtime's message if the file does not load (other models go on).

``--reference-labels cat,dog`` also writes the same model (given without
metadata) with MediaPipe's own metadata writer (``--reference-mean``/
``--reference-std``) and reports that file's metadata and results under
``reference_metadata`` and ``reference_results``, for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback


def _metadata(model_bytes: bytes) -> dict:
    from mediapipe.tasks.python.metadata import metadata

    displayer = metadata.MetadataDisplayer.with_model_buffer(model_bytes)
    parsed = json.loads(displayer.get_metadata_json())
    files = sorted(displayer.get_packed_associated_file_list())
    out = {"json": parsed, "packed_files": files, "labels": None, "normalization": None}
    subgraph = (parsed.get("subgraph_metadata") or [{}])[0]
    for tensor in subgraph.get("input_tensor_metadata") or []:
        for unit in tensor.get("process_units") or []:
            if unit.get("options_type") == "NormalizationOptions":
                options = unit.get("options") or {}
                out["normalization"] = {"mean": options.get("mean"), "std": options.get("std")}
        break
    label_files = [
        f["name"]
        for tensor in subgraph.get("output_tensor_metadata") or []
        for f in tensor.get("associated_files") or []
        if f.get("type") in ("TENSOR_VALUE_LABELS", "TENSOR_AXIS_LABELS")
    ]
    if label_files:
        text = displayer.get_associated_file_buffer(label_files[0]).decode("utf-8")
        lines = text.split("\n")
        out["labels"] = lines[:-1] if lines and lines[-1] == "" else lines
    return out


def _category(c) -> dict:
    return {
        "index": c.index,
        "score": c.score,
        "category_name": c.category_name,
        "display_name": c.display_name,
    }


def _detect(model_bytes: bytes, images: list[str]) -> list[dict]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_buffer=model_bytes),
        running_mode=vision.RunningMode.IMAGE,
        max_results=-1,
    )
    results = []
    with vision.ObjectDetector.create_from_options(options) as detector:
        for path in images:
            image = mp.Image.create_from_file(path)
            found = detector.detect(image)
            results.append(
                {
                    "image": path,
                    "width": image.width,
                    "height": image.height,
                    "detections": [
                        {
                            "box": [
                                d.bounding_box.origin_x,
                                d.bounding_box.origin_y,
                                d.bounding_box.width,
                                d.bounding_box.height,
                            ],
                            "categories": [_category(c) for c in d.categories],
                        }
                        for d in found.detections
                    ],
                }
            )
    return results


def _classify(model_bytes: bytes, images: list[str]) -> list[dict]:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_buffer=model_bytes),
        running_mode=vision.RunningMode.IMAGE,
        max_results=-1,
    )
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in images:
            image = mp.Image.create_from_file(path)
            found = classifier.classify(image)
            heads = [
                {
                    "head_index": h.head_index,
                    "head_name": h.head_name,
                    "categories": [_category(c) for c in h.categories],
                }
                for h in found.classifications
            ]
            results.append(
                {"image": path, "width": image.width, "height": image.height, "heads": heads}
            )
    return results


def _reference_metadata(model_bytes: bytes, task: str, args: argparse.Namespace) -> bytes:
    """The model with metadata written by MediaPipe's own writer (the model must have none)."""
    from mediapipe.tasks.python.metadata.metadata_writers import (
        image_classifier,
        metadata_writer,
        object_detector,
    )

    labels = metadata_writer.Labels().add(args.reference_labels.split(","))
    if task == "object_detector":
        writer = object_detector.MetadataWriter.create_for_models_with_nms(
            bytearray(model_bytes), args.reference_mean, args.reference_std, labels
        )
    else:
        writer = image_classifier.MetadataWriter.create(
            bytearray(model_bytes), args.reference_mean, args.reference_std, labels
        )
    written, _ = writer.populate()
    return bytes(written)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=("object_detector", "image_classifier"), required=True)
    parser.add_argument("--model", action="append", required=True, help=".tflite (repeatable)")
    parser.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    parser.add_argument("--reference-labels", default=None)
    parser.add_argument("--reference-mean", type=float, nargs="+", default=[0.0])
    parser.add_argument("--reference-std", type=float, nargs="+", default=[1.0])
    args = parser.parse_args(argv)

    import mediapipe as mp

    report = {"mediapipe": mp.__version__, "task": args.task, "models": []}
    for path in args.model:
        with open(path, "rb") as fh:
            model_bytes = fh.read()
        entry: dict = {"model": path, "bytes": len(model_bytes)}
        try:
            entry["metadata"] = _metadata(model_bytes)
        except Exception as exc:  # reported, not fatal: the runtime's own message matters
            entry["metadata_error"] = f"{type(exc).__name__}: {exc}"
        run = _detect if args.task == "object_detector" else _classify
        try:
            entry["results"] = run(model_bytes, args.image)
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc(limit=3)
        if args.reference_labels:
            try:
                written = _reference_metadata(model_bytes, args.task, args)
                entry["reference_metadata"] = _metadata(written)
                entry["reference_results"] = run(written, args.image)
            except Exception as exc:
                entry["reference_error"] = f"{type(exc).__name__}: {exc}"
        report["models"].append(entry)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
