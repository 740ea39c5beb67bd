"""Evaluation throughput (images/s) with 1 and 2 Beam DirectRunner workers.

A tiny grid detector (.tflite with TFLite_Detection_PostProcess) over generated
PNG images; the whole evaluation path runs: Beam reads and decodes the images,
each worker loads the LiteRT interpreter once, detections are gathered and
scored with pycocotools. Wall time includes worker start-up (each
multi-processing worker imports TensorFlow and LiteRT), which is what a user
waits for. Prints a table; writes bench/results/evaluate.json.

Run: .venv/bin/python bench/bench_evaluate.py [--images 200]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def machine() -> dict:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "n/a"

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow"),
        "ai-edge-litert": version("ai-edge-litert"),
        "apache-beam": version("apache-beam"),
        "pycocotools": version("pycocotools"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
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

    info = machine()
    spec = GridDetectorSpec(image_size=64, grid=8)
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
        sizes = ((64, 64), (64, 128), (128, 64))
        images_dir, annotations, _ = write_image_dataset(root, args.images, spec, sizes=sizes)
        gt = json.loads(annotations.read_text())
        model = root / "grid.tflite"
        model.write_bytes(build_grid_detector(spec))
        source = EvalSource.from_image_folder(gt, str(images_dir))
        factory = TFLiteDetectorFactory(str(model))
        for name, options in configs:
            start = time.perf_counter()
            detections, count = run_detection(factory, source, options)
            seconds = time.perf_counter() - start
            ap = coco_metrics(gt, detections)["AP"]
            rows.append(
                {
                    "config": name,
                    "workers": options.num_workers,
                    "running_mode": options.running_mode,
                    "images": count,
                    "seconds": round(seconds, 2),
                    "images_per_s": round(count / seconds, 2),
                    "AP": round(ap, 4),
                }
            )
            print(f"{name}: {count} images in {seconds:.1f} s", flush=True)

    mp = {r["workers"]: r for r in rows if r["running_mode"] == "multi_processing"}
    ratio = mp[2]["images_per_s"] / mp[1]["images_per_s"]
    print()
    print(f"{'config':<30} {'images':>7} {'seconds':>8} {'images/s':>9} {'AP':>7}")
    for r in rows:
        print(
            f"{r['config']:<30} {r['images']:>7} {r['seconds']:>8.1f} "
            f"{r['images_per_s']:>9.1f} {r['AP']:>7.4f}"
        )
    print(f"2 vs 1 multi_processing workers: x{ratio:.2f}")
    result = {
        "benchmark": "evaluate",
        "description": "Beam evaluation throughput of a tiny LiteRT detector over generated "
        "PNG images (wall time incl. worker start-up)",
        "model": {"image_size": spec.image_size, "anchors": spec.grid**2},
        "machine": info,
        "rows": rows,
        "speedup_2_vs_1_workers": round(ratio, 3),
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
