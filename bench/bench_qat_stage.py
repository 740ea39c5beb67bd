"""The QATTrainer's work on the demo, before and after a change: training vs overhead.

Runs the QATTrainer's library call (``model_maker.tasks.qat_from_examples``, what
the component runs with ``qat.mode: always``) on the demo's trained model and
Examples (the newest Trainer and ExampleGen artifacts under ``--pipeline-root``,
default runs/demo; ``make run`` first, or the bench runs ``configs/demo.yaml``
itself) with two versions of the code: ``--before`` (a git ref, checked out in a
temporary worktree) and the working tree, each in its own process, alternating
``--repeats`` times, with the ``qat`` section of each version's own
``configs/demo.yaml``.

Each phase is timed from outside by wrapping the library functions the call
goes through (same names in both versions): loading the float model, the
fake-quant rewrite (TFMOT), range calibration, the fine-tuning itself (the
trainer's ``fit``), the fake-quant COCO evaluation, saving the Keras model and
the SavedModel export. Overhead = the whole call minus ``fit``; the issue's
target is half the overhead of before.

Prints a table; writes bench/results/qat_stage.json with machine details and the
load average.

Run: .venv/bin/python bench/bench_qat_stage.py [--before 112131a] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

from before_after import REPO, alternate, ensure_demo_run, run_child
from git_worktree import working_tree_label
from machine_info import machine_info

RESULTS = REPO / "bench" / "results" / "qat_stage.json"
PHASES = ("load", "quantize", "calibrate", "fit", "evaluate", "save", "export")

#: Runs in the child process, with the code under test first on sys.path.
CHILD = r"""
import functools, glob, json, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
code, root, out = sys.argv[1:4]
sys.path.insert(0, code)
start = time.perf_counter()
from model_maker import tasks
from model_maker.object_detector import qat_trainer, train_lib
from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
from pipeline.config import load_config
imported = time.perf_counter() - start
phases = {}

def timed(owner, name, phase):
    original = getattr(owner, name)
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - begin
    setattr(owner, name, wrapper)

timed(qat_trainer, "load_trained_model", "load")
timed(qat_trainer, "quantize_efficientdet", "quantize")
timed(qat_trainer, "calibrate_fake_quant", "calibrate")
timed(train_lib.DetectorTrainer, "fit", "fit")
timed(qat_trainer, "evaluate", "evaluate")
timed(qat_trainer, "save_qat_model", "save")
timed(EfficientDetSpec, "export_saved_model", "export")

def newest(pattern):
    return sorted(glob.glob(os.path.join(root, pattern)), key=os.path.getmtime)[-1]

hparams = load_config(os.path.join(code, "configs", "demo.yaml")).stages().qat
begin = time.perf_counter()
result = tasks.qat_from_examples(
    newest("DetectionExampleGen/examples/*"), newest("Trainer/model/*"), out, hparams,
    run_dir=os.path.join(out, "run"),
)
seconds = time.perf_counter() - begin
print(json.dumps({"seconds": seconds, "import_seconds": imported, "phases": phases,
                  "steps": result.steps, "AP": result.metrics.get("AP")}))
"""


def run_qat(code: pathlib.Path, root: pathlib.Path, out: pathlib.Path) -> dict:
    result = run_child(CHILD, code, str(root), str(out), what="QAT")
    result["overhead"] = result["seconds"] - result["phases"].get("fit", 0.0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="112131a", help="git ref of the code to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pipeline-root", default=str(REPO / "runs" / "demo"))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    root = pathlib.Path(args.pipeline_root).resolve()
    ensure_demo_run(root, "Trainer/model")
    info = machine_info("tensorflow", "tensorflow-model-optimization")

    def measure(name: str, code: pathlib.Path, out: pathlib.Path) -> dict:
        result = run_qat(code, root, out)
        print(
            f"{name}: {result['seconds']:.1f} s, "
            f"fit {result['phases'].get('fit', 0):.1f} s, "
            f"overhead {result['overhead']:.1f} s, AP {result['AP']:.4f}",
            flush=True,
        )
        return result

    runs = alternate(args.before, args.repeats, measure, "bench-qat-")

    def value(run: dict, key: str) -> float:
        if key in PHASES:
            return run["phases"].get(key, 0.0)
        return run["overhead"] if key == "overhead" else run["seconds"]

    columns = (*PHASES, "overhead", "total")
    table = {
        name: {key: statistics.median(value(r, key) for r in results) for key in columns}
        for name, results in runs.items()
    }
    print(f"\nQATTrainer call on the demo ({root}), median of {args.repeats}, seconds")
    print(" ".join(f"{h:>9}" for h in ("code", *columns)))
    for name, row in table.items():
        print(f"{name:>9} " + " ".join(f"{row[k]:9.1f}" for k in columns))
    ratio = table["before"]["overhead"] / table["after"]["overhead"]
    print(f"overhead before / after: {ratio:.2f}x (target >= 2x)")
    document = {
        "machine": info,
        "load_average_at_end": list(os.getloadavg()),
        "before": args.before,
        "after": working_tree_label(REPO),
        "pipeline_root": str(root),
        "runs": runs,
        "median_seconds": table,
        "overhead_ratio": ratio,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
