"""Evaluation throughput (images/s) with 1 and 2 Beam DirectRunner workers.

A small detector (.tflite with TFLite_Detection_PostProcess: the grid detector
of the tests plus two 3x3x32 conv layers at 160x160, tens of ms per invoke)
over generated PNG images; the whole evaluation path runs: Beam reads and
decodes the images, each worker loads the LiteRT interpreter once (1 thread),
detections are gathered (and scored with pycocotools, outside the timing).

Each configuration runs on ``--images`` images and on ``--small`` images:
``images/s`` is the end-to-end rate (start-up included: each multi-processing
worker imports TensorFlow and LiteRT), ``steady images/s`` is
``(images - small) / (t_images - t_small)``, the rate once the workers are up.
Prints a table; writes bench/results/evaluate.json.

Run: .venv/bin/python bench/bench_evaluate.py [--images 200] [--small 20]
(``--images 1000 --small 50`` separates start-up from throughput on a busy machine.)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "evaluate.json"))
    args = parser.parse_args()

    from model_maker.core.coco_metrics import coco_metrics
    from model_maker.core.evaluation import BeamOptions, EvalSource, run_detection
    from model_maker.core.litert_detector import TFLiteDetectorFactory
    from tests.model_maker.core.detector_fixtures import (
        GridDetectorSpec,
        build_grid_detector,
        write_image_dataset,
    )

    info = machine_info("tensorflow", "ai-edge-litert", "apache-beam", "pycocotools")
    spec = GridDetectorSpec(image_size=160, grid=8, extra_conv_layers=2)
    configs = [
        ("1 worker, in_memory", BeamOptions(num_workers=1, running_mode="in_memory")),
        ("1 worker, multi_processing", BeamOptions(num_workers=1, running_mode="multi_processing")),
        (
            "2 workers, multi_processing",
            BeamOptions(num_workers=2, running_mode="multi_processing"),
        ),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        sizes = ((160, 160), (160, 320), (320, 160))
        images_dir, annotations, _ = write_image_dataset(root, args.images, spec, sizes=sizes)
        gt = json.loads(annotations.read_text())
        model = root / "detector.tflite"
        model.write_bytes(build_grid_detector(spec))
        factory = TFLiteDetectorFactory(str(model))
        latency = factory().latency(runs=20)
        source = EvalSource.from_image_folder(gt, str(images_dir))
        small = EvalSource(images=source.images[: args.small])
        for name, options in configs:
            timings = {}
            for label, src in (("small", small), ("full", source)):
                start = time.perf_counter()
                detections, count = run_detection(factory, src, options)
                timings[label] = (time.perf_counter() - start, count, detections)
                print(f"{name}: {count} images in {timings[label][0]:.1f} s", flush=True)
            seconds, count, detections = timings["full"]
            small_seconds, small_count, _ = timings["small"]
            # None when start-up noise exceeds the extra work (too few images to tell).
            extra = seconds - small_seconds
            steady = (count - small_count) / extra if extra > 1.0 else None
            rows.append(
                {
                    "config": name,
                    "workers": options.num_workers,
                    "running_mode": options.running_mode,
                    "images": count,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(count / seconds, 2),
                    "small_images": small_count,
                    "small_seconds": round(small_seconds, 2),
                    "steady_images_per_s": None if steady is None else round(steady, 2),
                    "AP": round(coco_metrics(gt, detections)["AP"], 4),
                }
            )

    mp = {r["workers"]: r for r in rows if r["running_mode"] == "multi_processing"}
    ratio = mp[2]["images_per_s"] / mp[1]["images_per_s"]
    steady = [mp[w]["steady_images_per_s"] for w in (1, 2)]
    steady_ratio = steady[1] / steady[0] if None not in steady else None
    print()
    print(
        f"model: {spec.image_size}x{spec.image_size}, invoke median {latency.median_ms:.1f} ms "
        f"(1 thread); load average at start {info['load_average_at_start'][0]:.1f} "
        f"on {info['cpu_count']} cores"
    )
    print(f"{'config':<30} {'images':>7} {'seconds':>8} {'images/s':>9} {'steady/s':>9} {'AP':>7}")
    for r in rows:
        print(
            f"{r['config']:<30} {r['images']:>7} {r['seconds']:>8.1f} "
            f"{r['images_per_s']:>9.1f} {_fmt(r['steady_images_per_s']):>9} {r['AP']:>7.4f}"
        )
    print(
        f"2 vs 1 multi_processing workers: x{ratio:.2f} end to end, x{_fmt(steady_ratio, 2)} steady"
    )
    result = {
        "benchmark": "evaluate",
        "description": "Beam evaluation throughput of a small LiteRT detector over generated "
        "PNG images; images_per_s includes worker start-up, steady_images_per_s does not",
        "model": {
            "image_size": spec.image_size,
            "anchors": spec.grid**2,
            "extra_conv_layers": spec.extra_conv_layers,
            "invoke_median_ms": round(latency.median_ms, 2),
            "invoke_p90_ms": round(latency.p90_ms, 2),
        },
        "machine": info,
        "rows": rows,
        "speedup_2_vs_1_workers": round(ratio, 3),
        "steady_speedup_2_vs_1_workers": None if steady_ratio is None else round(steady_ratio, 3),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
