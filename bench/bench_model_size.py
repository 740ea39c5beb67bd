"""Parameter counts (and FLOPs) of EfficientDet-Lite0..4 against google/automl's published sizes.

Builds each model with 90 classes (COCO, as automl's README table) at its
published image size, plus Lite0 at 320 with 2 classes (the reference figure
measured on this machine: 3.24 M parameters, 1.73 GFLOP). Prints a table and
writes ``bench/results/model_size.json`` with the machine details.

    .venv/bin/python bench/bench_model_size.py [--models 0,1,2,3,4] [--no-flops]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# google/automl efficientdet README (params with 90 COCO classes).
PUBLISHED_MILLIONS = {0: 3.2, 1: 4.2, 2: 5.3, 3: 8.4, 4: 15.1}
REFERENCE_LITE0_2_CLASSES = {"params": 3.24e6, "gflops": 1.73}


def _flops(model, image_size: int) -> int:
    """Float operations of one forward pass (TF profiler; a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, image_size, image_size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(
        graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    return int(profile.total_float_ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="0,1,2,3,4", help="comma-separated Lite indices")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument(
        "--output",
        default=str(pathlib.Path(__file__).resolve().parent / "results" / "model_size.json"),
    )
    args = parser.parse_args()

    import model_maker  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    from model_maker.object_detector.anchors import Anchors
    from model_maker.object_detector.model import build_efficientdet_lite, count_params
    from model_maker.object_detector.model_config import get_model_config

    runs = [(0, 2)] + [(int(i), 90) for i in args.models.split(",")]
    rows = []
    for lite, num_classes in runs:
        config = get_model_config(f"efficientdet-lite{lite}")
        start = time.perf_counter()
        model = build_efficientdet_lite(config, num_classes)
        build_s = time.perf_counter() - start
        counts = count_params(model)
        row = {
            "model": config.model_name,
            "image_size": config.image_size,
            "num_classes": num_classes,
            "anchors": Anchors.from_config(config).num_anchors,
            "params_total": counts["total"],
            "params_trainable": counts["trainable"],
            "params_by_part": {k: counts[k] for k in ("backbone", "fpn", "class_net", "box_net")},
            "published_params_millions": PUBLISHED_MILLIONS[lite] if num_classes == 90 else None,
            "build_seconds": round(build_s, 1),
        }
        if not args.no_flops:
            row["gflops"] = round(_flops(model, config.image_size) / 1e9, 3)
        rows.append(row)
        del model

    header = (
        f"{'model':20} {'size':>5} {'cls':>4} {'anchors':>7} {'params':>11} "
        f"{'trainable':>11} {'published':>9} {'GFLOP':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        published = row["published_params_millions"]
        print(
            f"{row['model']:20} {row['image_size']:>5} {row['num_classes']:>4} "
            f"{row['anchors']:>7} {row['params_total']:>11,} {row['params_trainable']:>11,} "
            f"{(f'{published}M' if published else '-'):>9} {row.get('gflops', '-'):>7}"
        )
    result = {
        "benchmark": "model_size",
        "notes": (
            "params_total counts every weight incl. batch-norm moving statistics "
            "(keras count_params); FLOPs from the TF profiler, multiply-add = 2, batch 1; "
            "reference: automl Keras Lite0@320 with 2 classes = 3.24 M params, 1.73 GFLOP "
            "(shared/NOTES-MODEL.md)."
        ),
        "reference_lite0_2_classes": REFERENCE_LITE0_2_CLASSES,
        "machine": machine_info("tensorflow", "tf-keras"),
        "results": rows,
    }
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
