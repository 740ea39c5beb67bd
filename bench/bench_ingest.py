"""Ingest throughput (images/s) and peak RSS with 1 and 2 Beam DirectRunner workers.

Generates 2,000 synthetic 256x256 JPEG images (``qatflow demo-data``), then runs
the ingestion pipeline on the first 500 and on all 2,000 images with 1 worker
(in-process), 2 workers (multi_processing, the mode the issue asks for) and,
for comparison, 2 threads (multi_threading), each in a fresh process whose
whole process tree is sampled for resident memory. Reports:

- raw throughput: images / wall time of ``ingest()`` (worker start-up included);
- marginal throughput: (2000 - 500) / (t_2000 - t_500), i.e. the per-image rate
  once the fixed start-up cost (worker processes importing TensorFlow) is paid;
- the 2-worker / 1-worker ratio of each (target >= 1.6);
- start-up and per-image cost apart (seconds = start-up + N x per-image, through
  the two runs), and from how many images each mode finishes before one worker;
- CPU seconds of the process tree and the machine's load while it ran;
- peak RSS of the process tree at 2,000 vs 500 images (target: within 20%).

Prints a table and writes ``bench/results/ingest.json`` with machine details.

    .venv/bin/python bench/bench_ingest.py [--images 2000] [--small 500]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from machine_info import machine_info

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ingest.json"
MODES = ((1, "in_memory"), (2, "multi_processing"), (2, "multi_threading"))


def _run_one(args: argparse.Namespace) -> None:
    """Child process: one ingest run, timing printed as JSON on the last line."""
    from model_maker.core.data.ingest import IngestOptions, ingest

    options = IngestOptions(
        format="coco",
        input=args.images_dir,
        annotations=args.annotations,
        output=args.output,
    )
    beam_args = [f"--direct_num_workers={args.workers}", f"--direct_running_mode={args.mode}"]
    start = time.perf_counter()
    result = ingest(options, beam_args)
    seconds = time.perf_counter() - start
    images = sum(result.images.values())
    print(json.dumps({"seconds": seconds, "images": images}))


def _sample_tree(proc, cpu: dict[int, float]) -> int:
    """Resident bytes of ``proc`` and its descendants; records each one's CPU seconds."""
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
            times = p.cpu_times()
            cpu[p.pid] = max(cpu.get(p.pid, 0.0), times.user + times.system)
        except psutil.NoSuchProcess:
            pass
    return total


def _measure(images_dir: str, annotations: str, workers: int, mode: str, output: str) -> dict:
    import psutil

    cmd = [
        sys.executable,
        __file__,
        "--run-one",
        "--images-dir",
        images_dir,
        "--annotations",
        annotations,
        "--output",
        output,
        "--workers",
        str(workers),
        "--mode",
        mode,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    proc = psutil.Process(child.pid)
    peak = 0
    cpu: dict[int, float] = {}
    load_before = os.getloadavg()[0]
    while child.poll() is None:
        peak = max(peak, _sample_tree(proc, cpu))
        time.sleep(0.1)
    out = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise SystemExit(f"ingest run failed ({workers} workers): exit {child.returncode}")
    timing = json.loads(out.strip().splitlines()[-1])
    return {
        **timing,
        "workers": workers,
        "mode": mode,
        "peak_rss_mb": peak / 2**20,
        "cpu_seconds_tree": sum(cpu.values()),
        "load_average_1min": [load_before, os.getloadavg()[0]],
    }


def coco_subset(annotations: str, count: int, path: str) -> str:
    """A COCO file of the first ``count`` images of ``annotations`` (and their boxes)."""
    with open(annotations, encoding="utf-8") as fh:
        data = json.load(fh)
    keep = {img["id"] for img in data["images"][:count]}
    data["images"] = data["images"][:count]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images-dir", help=argparse.SUPPRESS)
    parser.add_argument("--annotations", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="in_memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        _run_one(args)
        return

    from model_maker.core.data.demo_data import generate_demo_data

    work = tempfile.mkdtemp(prefix="bench_ingest_")
    try:
        data = generate_demo_data(os.path.join(work, "data"), num_images=args.images, seed=0)
        small = coco_subset(data.annotations, args.small, os.path.join(work, "small.json"))
        runs = []
        for workers, mode in MODES:
            for count, annotations in ((args.small, small), (args.images, data.annotations)):
                out = os.path.join(work, f"out_{mode}_{count}")
                run = _measure(data.images_dir, annotations, workers, mode, out)
                assert run["images"] == count, run
                runs.append(run)
                print(
                    f"  {workers} x {mode}, {count} images: {run['seconds']:.1f} s, "
                    f"peak RSS {run['peak_rss_mb']:.0f} MB, "
                    f"tree CPU {run['cpu_seconds_tree']:.0f} s, "
                    f"load {run['load_average_1min'][0]:.1f}",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def pick(mode: str, count: int) -> dict:
        return next(r for r in runs if r["mode"] == mode and r["images"] == count)

    summary = {}
    for workers, mode in MODES:
        small_run, big_run = pick(mode, args.small), pick(mode, args.images)
        summary[mode] = {
            "workers": workers,
            "raw_images_per_s": args.images / big_run["seconds"],
            "marginal_images_per_s": (args.images - args.small)
            / max(big_run["seconds"] - small_run["seconds"], 1e-9),
            "peak_rss_mb_small": small_run["peak_rss_mb"],
            "peak_rss_mb_large": big_run["peak_rss_mb"],
            "rss_growth": big_run["peak_rss_mb"] / small_run["peak_rss_mb"],
        }
        # seconds = start-up + images / marginal rate, through the two runs
        summary[mode]["startup_seconds"] = (
            small_run["seconds"] - args.small / summary[mode]["marginal_images_per_s"]
        )
        summary[mode]["per_image_ms"] = 1000.0 / summary[mode]["marginal_images_per_s"]
    base = summary["in_memory"]
    for entry in summary.values():
        entry["raw_ratio_vs_1"] = entry["raw_images_per_s"] / base["raw_images_per_s"]
        entry["marginal_ratio_vs_1"] = (
            entry["marginal_images_per_s"] / base["marginal_images_per_s"]
        )
        # the dataset size from which these workers finish before one worker does
        saved_per_image = base["per_image_ms"] - entry["per_image_ms"]
        extra_startup = entry["startup_seconds"] - base["startup_seconds"]
        entry["pays_from_images"] = (
            None
            if entry is base or saved_per_image <= 0
            else max(extra_startup, 0.0) / (saved_per_image / 1000.0)
        )

    print()
    print(
        f"| workers | mode | {args.images} img raw img/s (x 1 worker) | marginal img/s "
        f"(x 1 worker) | peak RSS {args.small} / {args.images} img (MB) | RSS growth |"
    )
    print("|---|---|---|---|---|---|")
    for mode, s in summary.items():
        print(
            f"| {s['workers']} | {mode} | {s['raw_images_per_s']:.1f} "
            f"({s['raw_ratio_vs_1']:.2f}x) | {s['marginal_images_per_s']:.1f} "
            f"({s['marginal_ratio_vs_1']:.2f}x) | {s['peak_rss_mb_small']:.0f} / "
            f"{s['peak_rss_mb_large']:.0f} | {(s['rss_growth'] - 1) * 100:+.1f}% |"
        )
    print(
        "targets: 2 workers >= 1.6x one worker; peak RSS within 20% for 4x the images. "
        "raw includes worker start-up; marginal = (N - n) / (t_N - t_n)."
    )
    print()
    for mode, s in summary.items():
        pays = s["pays_from_images"]
        print(
            f"{s['workers']} x {mode}: start-up {s['startup_seconds']:.2f} s, "
            f"{s['per_image_ms']:.2f} ms per image"
            + ("" if pays is None else f"; faster than 1 worker from {pays:,.0f} images")
        )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "ingest",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info("tensorflow", "apache-beam"),
        "images": args.images,
        "small": args.small,
        "runs": runs,
        "summary": summary,
    }
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
