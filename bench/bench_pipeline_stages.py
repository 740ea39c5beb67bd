"""Seconds per pipeline stage of the demo, before and after a change, in one run.

Runs the whole demo pipeline (``configs/demo.yaml``: ExampleGen, Trainer,
QATTrainer, TFLiteConverter, Evaluator, Pusher) twice into empty pipeline roots,
caching useless there: once with the code of ``--before`` (a git ref checked out
in a temporary worktree) and once with the working tree, on the same demo data
(``runs/demo/data``; made with ``qatflow demo-data`` as ``make run`` does when
missing). Each stage's seconds are read from ML Metadata (an execution's
creation to its last update); the demo's table (AP per variant) is kept beside
them, so a speed-up that moved accuracy shows.

Prints a table; writes bench/results/pipeline_stages.json with machine details
and the load average.

Run: .venv/bin/python bench/bench_pipeline_stages.py [--before 7f6e04f]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from git_worktree import working_tree_label, worktree
from machine_info import machine_info

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "pipeline_stages.json"
STAGES = (
    "DetectionExampleGen",
    "Trainer",
    "QATTrainer",
    "TFLiteConverter",
    "Evaluator",
    "Pusher",
)


def stage_seconds(root: pathlib.Path) -> dict[str, float]:
    """{component: seconds} of the newest run in ``root``'s ML Metadata store."""
    sys.path.insert(0, str(REPO))
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(root / "metadata.sqlite"))
    )
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {
        types[e.type_id]: (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0
        for e in store.get_executions_by_context(run.id)
    }


def run_pipeline(code: pathlib.Path, root: pathlib.Path, data: pathlib.Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--config",
            "configs/demo.yaml",
            "--set",
            f"runner.pipeline_root={root}",
            "--set",
            f"data.input={data / 'images'}",
            "--set",
            f"data.annotations={data / 'annotations.json'}",
        ],  # fmt: skip
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the pipeline with {code} failed:\n{done.stderr[-3000:]}")
    latest = json.loads((root / "latest_run.json").read_text())
    metrics = json.loads((pathlib.Path(latest["evaluation"]) / "metrics.json").read_text())
    return {
        "wall_seconds": round(wall, 1),
        "stages": stage_seconds(root),
        "AP": {v["variant"]: v["metrics"].get("AP") for v in metrics["variants"]},
        "blessed": latest["blessed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="7f6e04f", help="git ref of the code to compare with")
    parser.add_argument("--data", default=str(REPO / "runs" / "demo" / "data"))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    data = pathlib.Path(args.data).resolve()
    if not (data / "annotations.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "demo-data", "--output", str(data),
             "--images", "200", "--seed", "0"],
            cwd=REPO, check=True,
        )  # fmt: skip
    info = machine_info("tensorflow", "tfx", "apache-beam")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        with worktree(REPO, args.before) as before:
            for name, code in (("before", before), ("after", REPO)):
                results[name] = run_pipeline(code, pathlib.Path(tmp) / f"root-{name}", data)
                print(f"{name}: {results[name]['wall_seconds']:.0f} s", flush=True)
    print(f"\nThe demo pipeline, empty pipeline roots ({args.before} vs the working tree)")
    print(f"{'stage':22} {'before s':>9} {'after s':>9} {'ratio':>6}")
    for stage in (*STAGES, "wall (whole command)"):
        if stage.startswith("wall"):
            b, a = results["before"]["wall_seconds"], results["after"]["wall_seconds"]
        else:
            b, a = results["before"]["stages"].get(stage), results["after"]["stages"].get(stage)
        if b is None or a is None:
            continue
        print(f"{stage:22} {b:9.1f} {a:9.1f} {b / a:6.2f}")
    for name, result in results.items():
        ap = ", ".join(f"{k} {v * 100:.2f}" for k, v in result["AP"].items())
        print(f"AP {name}: {ap}")
    document = {
        "machine": info,
        "load_average_at_end": list(os.getloadavg()),
        "before": args.before,
        "after": working_tree_label(REPO),
        "results": results,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
