"""The TFLiteConverter stage of the demo, before and after a change, side by side.

Converts the demo's trained models (the newest Trainer, QATTrainer and Examples
artifacts under ``--pipeline-root``, default runs/demo; ``make run`` first, or
the bench runs ``configs/demo.yaml`` itself) into the demo's TFLite set
(the ``convert`` section of each version's own ``configs/demo.yaml``) with two versions of the
code: ``--before`` (a git ref, checked out in a temporary worktree) and the
working tree. Each conversion runs in its own process, alternating before and
after ``--repeats`` times, and reports the wall time of the whole
``convert_trained_model`` call (models loaded, calibration images read, every
variant converted, metadata written) and the time at which each variant's file
was written. The files of both versions are compared byte for byte and by
what runs (ops, and every tensor's type, shape, quantization and weights).

Prints a table; writes bench/results/converter.json with machine details and the
load average.

Run: .venv/bin/python bench/bench_converter.py [--before 7f6e04f] [--repeats 2]
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

RESULTS = REPO / "bench" / "results" / "converter.json"

#: Runs in the child process, with the code under test first on sys.path.
CHILD = r"""
import glob, hashlib, json, logging, os, sys, time
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
code, root, out = sys.argv[1:4]
sys.path.insert(0, code)
start = time.perf_counter()
written = {}

class Files(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if text.startswith("wrote ") and ".tflite" in text:
            name = os.path.basename(text.split()[1])
            written[name[: -len(".tflite")]] = round(time.perf_counter() - start, 2)

logging.getLogger("qatflow").addHandler(Files())
logging.getLogger("qatflow").setLevel(logging.INFO)
from model_maker.tasks import convert_trained_model
from pipeline.config import load_config

def newest(pattern):
    return sorted(glob.glob(os.path.join(root, pattern)), key=os.path.getmtime)[-1]

config = load_config(os.path.join(code, "configs", "demo.yaml"))
qat = [p for p in glob.glob(os.path.join(root, "QATTrainer/qat_model/*"))
       if os.path.isdir(os.path.join(p, "keras"))]
loaded = time.perf_counter() - start
begin = time.perf_counter()
convert_trained_model(
    newest("Trainer/model/*"), out, config.stages().converter,
    qat_model_dir=sorted(qat, key=os.path.getmtime)[-1],
    examples_uri=newest("DetectionExampleGen/examples/*"),
)
seconds = time.perf_counter() - begin
from ai_edge_litert.tools import flatbuffer_utils

def structure(content):
    # ops and every tensor (name, type, shape, quantization, weights): what runs
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    digest = hashlib.sha256()
    for op in graph.operators:
        digest.update(repr((op.opcodeIndex, list(op.inputs), list(op.outputs))).encode())
    for t in graph.tensors:
        q = t.quantization
        scale = None if q is None or q.scale is None else list(q.scale)
        zero = None if q is None or q.zeroPoint is None else list(q.zeroPoint)
        digest.update(repr((t.name, t.type, list(t.shape), scale, zero)).encode())
        if t.buffer:
            data = model.buffers[t.buffer].data
            digest.update(b"" if data is None else bytes(data))
    return digest.hexdigest()

files, structures = {}, {}
for p in sorted(glob.glob(os.path.join(out, "*.tflite"))):
    content = open(p, "rb").read()
    files[os.path.basename(p)] = hashlib.sha256(content).hexdigest()
    structures[os.path.basename(p)] = structure(content)
print(json.dumps({"seconds": seconds, "import_seconds": loaded, "written_at": written,
                  "files": files, "structures": structures}))
"""


def convert(code: pathlib.Path, root: pathlib.Path, out: pathlib.Path) -> dict:
    return run_child(CHILD, code, str(root), str(out), what="conversion")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="7f6e04f", help="git ref of the code to compare with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pipeline-root", default=str(REPO / "runs" / "demo"))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    root = pathlib.Path(args.pipeline_root).resolve()
    ensure_demo_run(root, "QATTrainer/qat_model")
    info = machine_info("tensorflow", "ai-edge-litert")

    def measure(name: str, code: pathlib.Path, out: pathlib.Path) -> dict:
        result = convert(code, root, out)
        print(f"{name}: {result['seconds']:.1f} s", flush=True)
        return result

    runs = alternate(args.before, args.repeats, measure, "bench-converter-")
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    every = runs["before"] + runs["after"]
    identical = {
        name: {
            "bytes": all(r["files"][name] == every[0]["files"][name] for r in every),
            "ops_and_tensors": all(
                r["structures"][name] == every[0]["structures"][name] for r in every
            ),
        }
        for name in every[0]["files"]
    }
    print(f"\nTFLiteConverter on the demo ({root}), median of {args.repeats}")
    print(f"{'code':8} {'seconds':>8}  files written at (s after the call began)")
    for name, results in runs.items():
        at = results[-1]["written_at"]
        listed = ", ".join(f"{k} {v:.1f}" for k, v in at.items())
        print(f"{name:8} {median[name]:8.1f}  {listed}")
    print(f"speed-up {median['before'] / median['after']:.2f}x")
    for name, same in identical.items():
        print(f"{name}: bytes identical {same['bytes']}, ops and tensors {same['ops_and_tensors']}")
    document = {
        "machine": info,
        "load_average_at_end": list(os.getloadavg()),
        "before": args.before,
        "after": working_tree_label(REPO),
        "pipeline_root": str(root),
        "runs": runs,
        "median_seconds": median,
        "speedup": median["before"] / median["after"],
        "identical": identical,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    pathlib.Path(args.output).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
