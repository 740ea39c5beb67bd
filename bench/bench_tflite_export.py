"""Size and single-thread latency of every TFLite variant of EfficientDet-Lite0.

Builds EfficientDet-Lite0 (default 320 px, 2 classes, untrained weights: size
and latency do not depend on the weight values), exports float32, float16,
dynamic_range, ptq_int8 (calibrated on raccoon images resized and padded) and
qat_int8 (``quantize_efficientdet`` of the same model, a few training-mode
passes to set the quantizer ranges), all with the default post-processing
(``NMSOptions``: the 1000 best anchors go to the NMS op), plus float32, ptq_int8
and qat_int8 once more with every anchor sent to the op (``_allnms``,
``pre_nms_top_k: 0``, what files were before) and without the NMS op (``_raw``),
then times ``--runs`` invocations of each file at each ``--threads`` count on
one raccoon image (after 3 warm-up runs) and reports the median and p90 and
the int8 / float32 latency ratios (the 2x target) of each kind of file. The
timing is interleaved: ``--rounds`` passes over every (file, threads) pair,
``runs / rounds`` invocations each, so that a slow minute of this noisy
machine falls on every file alike instead of on whichever was timed then.

Prints a table; writes bench/results/tflite_export.json with machine details.

Run: .venv/bin/python bench/bench_tflite_export.py [--image-size 320] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RACCOON = REPO.parent / "shared" / "datasets" / "raccoon" / "images"


def raccoon_images(size: int, count: int):
    """``count`` raccoon images resized keeping aspect ratio and padded to ``size``."""
    import numpy as np
    from PIL import Image

    from model_maker.core.litert_detector import resize_and_pad

    files = sorted(RACCOON.glob("*.jpg"))[:count]
    if not files:
        raise SystemExit(f"no images in {RACCOON}")
    out = []
    for path in files:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        out.append(resize_and_pad(pixels, size, size)[0])
    return out


def latency_parser(description: str) -> argparse.ArgumentParser:
    """The options of the Lite0 latency benches: model size, classes, runs, threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", default="1,2", help="LiteRT thread counts to time")
    return parser


def interleaved_latency(
    calls: dict[Any, Callable[[], Any]], runs: int, rounds: int, warmup: int = 3
) -> dict[Any, tuple[float, float]]:
    """(median ms, p90 ms) of ``runs`` calls of each of ``calls``, timed in ``rounds``
    round-robin passes (``runs / rounds`` calls each) after ``warmup`` untimed calls."""
    import numpy as np

    per_round = max(1, -(-runs // rounds))
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[Any, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                samples[key].append((time.perf_counter() - start) * 1000.0)
    return {
        key: (float(np.median(times)), float(np.percentile(times, 90)))
        for key, times in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = latency_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing passes")
    parser.add_argument("--calibration", type=int, default=32, help="PTQ calibration images")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "tflite_export.json"))
    args = parser.parse_args(argv)

    import numpy as np

    from model_maker.core.detection_postprocess import NMSOptions
    from model_maker.core.litert_detector import TFLiteDetector
    from model_maker.core.quantization import quantization_config_for_variant
    from model_maker.core.tflite_convert import list_ops
    from model_maker.object_detector.anchors import Anchors
    from model_maker.object_detector.export import export_tflite
    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config
    from model_maker.object_detector.qat_model import quantize_efficientdet

    threads = [int(t) for t in args.threads.split(",")]
    info = machine_info("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert")
    config = get_model_config("efficientdet-lite0", image_size=args.image_size)
    model = build_efficientdet_lite(config, args.num_classes)
    anchors = Anchors.from_config(config)
    images = raccoon_images(args.image_size, args.calibration)
    qat = quantize_efficientdet(model)
    batch = np.stack(images[:8]).astype(np.float32)
    for _ in range(2):
        qat(batch, training=True)

    rows = []
    calls: dict[tuple[str, int], Callable[[], Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        default, every_anchor = NMSOptions(), NMSOptions(pre_nms_top_k=0)
        plans = [
            (v, True, default, v)
            for v in ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8")
        ]
        # every anchor to the NMS op: with untrained weights (and after focal-loss
        # training, see the README) every anchor passes the 1e-8 score threshold
        plans += [
            (v, True, every_anchor, f"{v}_allnms") for v in ("float32", "ptq_int8", "qat_int8")
        ]
        # the raw files (no NMS op) time the network alone
        plans += [(v, False, default, f"{v}_raw") for v in ("float32", "ptq_int8", "qat_int8")]
        for variant, with_nms, nms, name in plans:
            path = os.path.join(tmp, f"{name}.tflite")
            quant = quantization_config_for_variant(
                variant,
                images if variant in ("ptq_int8", "qat_int8") else None,
                quantization_steps=args.calibration,
            )
            start = time.perf_counter()
            result = export_tflite(
                qat if variant == "qat_int8" else model,
                path,
                quant,
                anchors=anchors,
                num_classes=args.num_classes,
                nms=nms,
                with_nms=with_nms,
            )
            convert_s = time.perf_counter() - start
            ops = list_ops(pathlib.Path(path).read_bytes())
            kernels = sorted({op.weight_type for op in ops if op.weight_type})
            for count in threads:
                detector = TFLiteDetector(path, num_threads=count, anchors=result.anchors_path)
                model_input, _ = detector.preprocess(images[0].astype(np.uint8))
                calls[name, count] = lambda d=detector, x=model_input: d.invoke(x)
            rows.append(
                {
                    "variant": name,
                    "with_nms": with_nms,
                    "pre_nms_top_k": nms.pre_nms_top_k if with_nms else None,
                    "bytes": result.num_bytes,
                    "input_dtype": result.description.inputs[0].dtype,
                    "kernel_types": kernels,
                    "convert_seconds": round(convert_s, 1),
                }
            )
            print(f"  {name}: {result.num_bytes / 1e6:.2f} MB", flush=True)
        print(f"timing {len(calls)} (file, threads) pairs in {args.rounds} interleaved rounds")
        timed = interleaved_latency(calls, args.runs, args.rounds)
        for row in rows:
            median, p90 = timed[row["variant"], threads[0]]
            row.update(
                median_ms=round(median, 2),
                p90_ms=round(p90, 2),
                runs=max(1, -(-args.runs // args.rounds)) * args.rounds,
                median_ms_by_threads={
                    str(n): round(timed[row["variant"], n][0], 2) for n in threads
                },
            )

    float_bytes = next(r["bytes"] for r in rows if r["variant"] == "float32")
    for row in rows:
        row["x_smaller_than_float32"] = round(float_bytes / row["bytes"], 2)
    header = (
        f"{'variant':<16} {'MB':>6} {'x<f32':>6} {'input':>8} {'kernels':>14} "
        f"{'median ms':>10} {'p90 ms':>8}"
    )
    print(
        f"\nEfficientDet-Lite0 {args.image_size}px, {args.num_classes} classes, "
        f"{threads[0]} LiteRT thread(s) in the median columns, {args.runs} runs"
        f" in {args.rounds} interleaved rounds"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['variant']:<16} {r['bytes'] / 1e6:>6.2f} {r['x_smaller_than_float32']:>6.2f} "
            f"{r['input_dtype']:>8} {'/'.join(r['kernel_types']):>14} "
            f"{r['median_ms']:>10.1f} {r['p90_ms']:>8.1f}"
        )
    speedups = {}
    print("\nint8 speed-up over float32 (median latency ratio; target >= 2x)")
    for suffix in ("", "_allnms", "_raw"):
        base = next(r for r in rows if r["variant"] == f"float32{suffix}")
        for variant in ("ptq_int8", "qat_int8"):
            row = next(r for r in rows if r["variant"] == f"{variant}{suffix}")
            for n in map(str, threads):
                ratio = base["median_ms_by_threads"][n] / row["median_ms_by_threads"][n]
                speedups[f"{variant}{suffix}@{n}t"] = round(ratio, 2)
                print(
                    f"  {variant}{suffix:<7} {n} thread(s): {base['median_ms_by_threads'][n]:.1f}"
                    f" / {row['median_ms_by_threads'][n]:.1f} ms = {ratio:.2f}x"
                    f" ({'meets' if ratio >= 2 else 'misses'} 2x)"
                )
    info["load_average_at_end"] = os.getloadavg()
    document = {
        "benchmark": "tflite_export",
        "model": "efficientdet-lite0",
        "image_size": args.image_size,
        "num_classes": args.num_classes,
        "threads": threads,
        "rounds": args.rounds,
        "machine": info,
        "results": rows,
        "int8_speedup_over_float32": speedups,
    }
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
