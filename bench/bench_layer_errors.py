"""Per-layer int8 error and ptq_mixed on raccoon: AP of N float layers beside ptq_int8 and qat_int8.

Starts from a finished pipeline run (``qatflow run``; default: the newest
artifacts under ``--pipeline-root``, runs/raccoon-mixed, which the bench fills
first with ``configs/raccoon.yaml`` when it holds no run): the Trainer's Model, the QATTrainer's
Model and the Examples. With the library's own entry points
(``model_maker.tasks.convert_trained_model`` and ``evaluate_artifacts``) it
writes one TFLite set per ``ptq_mixed`` float-layer count (``--counts``,
default 0, 5, 10): the first set also holds ``float32``, ``ptq_int8`` and
``qat_int8``, the others ``ptq_mixed`` only. Every set is evaluated on the
same split with the Evaluator (COCO AP/AP50, file size, latency: median
interpreter invoke, 1 thread, ``--latency-runs`` runs).

Reports per variant AP, AP50, bytes, latency and the layers kept float, the
top-N table of the PTQ model's ``layer_errors.json`` (rank, Keras layer, op,
rmse_over_scale, mean_error, max_abs_error), the calibration time (from the
converter's log) and the layer-error measurement time (``seconds`` of
layer_errors.json), and checks that ``ptq_mixed`` with 0 float layers has the
ops of ``ptq_int8`` and its AP. The conversion settings (calibration images,
NMS, input type) are the run's ``config.yaml``'s. Prints tables; writes
bench/results/layer_errors.json with machine details.

Run: nice -n 15 .venv/bin/python bench/bench_layer_errors.py
     [--pipeline-root runs/raccoon-mixed] [--counts 0,5,10] [--top 10]
     [--model-dir DIR --qat-model-dir DIR --examples DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import time
from typing import Any

from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "layer_errors.json"
CALIBRATION_LOG = re.compile(r"calibrated the float model in ([0-9.]+) s")


def newest_artifact(root: pathlib.Path, component: str, output: str) -> pathlib.Path:
    """``<root>/<component>/<output>/<id>`` with the largest execution id."""
    folder = root / component / output
    ids = (
        [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    )
    if not ids:
        raise SystemExit(f"no {component} {output} artifact under {folder}: run the pipeline first")
    return max(ids, key=lambda p: int(p.name))


class LogTap(logging.Handler):
    """Keeps the messages of the ``qatflow`` logger (the converter logs its calibration time)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def calibration_seconds(self, since: int) -> list[float]:
        return [
            float(m.group(1))
            for text in self.messages[since:]
            if (m := CALIBRATION_LOG.search(text))
        ]


def op_signature(path: pathlib.Path) -> list[tuple[str, str]]:
    """(op, dtype of its first output) for every op of a .tflite file, in order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    out = []
    for op in interpreter._get_ops_details():  # noqa: SLF001 - read-only inspection
        outputs = [i for i in op["outputs"] if i >= 0]
        out.append((op["op_name"], dtypes.get(outputs[0], "?") if outputs else "-"))
    return out


def float_op_count(signature: list[tuple[str, str]]) -> int:
    """Ops computing in float (float32 output), not counting the (de)quantize boundary ops
    and the detection post-processing op."""
    skip = {"DEQUANTIZE", "QUANTIZE", "TFLite_Detection_PostProcess", "CUSTOM"}
    return sum(1 for op, dtype in signature if dtype == "float32" and op not in skip)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _sha256(path: str) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _ms(latency: dict[str, Any] | None) -> str:
    return "n/a" if not latency else f"{latency['median_ms']:.2f} / {latency['p90_ms']:.2f}"


def run_raccoon_pipeline(root: pathlib.Path) -> None:
    """Train on raccoon through the real pipeline into ``root`` (about 20 minutes on 2
    cores), with every int8 variant, so the bench has artifacts to start from."""
    import subprocess

    print(f"no pipeline run under {root}: running configs/raccoon.yaml there first", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            "--config",
            "configs/raccoon.yaml",
            "--set",
            f"runner.pipeline_root={root}",
            "--set",
            "convert.variants=[float32,ptq_int8,ptq_mixed,qat_int8]",
        ],  # fmt: skip
        cwd=REPO,
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline-root", default=str(REPO / "runs" / "raccoon-mixed"))
    parser.add_argument("--model-dir", default="", help="Trainer Model artifact (newest)")
    parser.add_argument("--qat-model-dir", default="", help="QATTrainer Model artifact (newest)")
    parser.add_argument("--examples", default="", help="Examples artifact (newest)")
    parser.add_argument("--counts", default="0,5,10", help="ptq_mixed float-layer counts")
    parser.add_argument("--top", type=int, default=10, help="rows of the per-layer table")
    parser.add_argument("--latency-runs", type=int, default=-1, help="default: the run's config")
    parser.add_argument(
        "--no-float", action="store_true", help="leave float32 out of the first set"
    )
    parser.add_argument(
        "--work", default="", help="output folder (<pipeline-root>/bench_layer_errors)"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep TFLite sets already in --work (evaluate only)"
    )
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = machine_info("tensorflow", "tf-keras", "ai-edge-litert", "pycocotools")
    wall = time.perf_counter()

    from model_maker.core.settings import replace
    from model_maker.object_detector.options import TFLiteSetOptions
    from model_maker.tasks import convert_trained_model, evaluate_artifacts
    from pipeline.config import load_config

    root = pathlib.Path(args.pipeline_root).resolve()
    if not args.model_dir and not (root / "Trainer" / "model").is_dir():
        run_raccoon_pipeline(root)
    model_dir = pathlib.Path(args.model_dir or newest_artifact(root, "Trainer", "model"))
    qat_dir = pathlib.Path(args.qat_model_dir or newest_artifact(root, "QATTrainer", "qat_model"))
    examples = pathlib.Path(
        args.examples or newest_artifact(root, "DetectionExampleGen", "examples")
    )
    work = pathlib.Path(args.work or root / "bench_layer_errors")
    config = load_config(root / "config.yaml") if (root / "config.yaml").exists() else None
    base_convert = config.convert if config else TFLiteSetOptions().convert
    postprocess = config.postprocess if config else TFLiteSetOptions().postprocess
    evaluate = config.evaluate if config else None
    latency_runs = (
        args.latency_runs if args.latency_runs >= 0 else (evaluate.latency_runs if evaluate else 20)
    )
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    print(f"model {model_dir}\nqat model {qat_dir}\nexamples {examples}\nwork {work}")

    tap = LogTap()
    logging.getLogger("qatflow").addHandler(tap)
    sets = []
    for i, count in enumerate(counts):
        variants = ("ptq_mixed",)
        if i == 0:
            variants = (
                *(() if args.no_float else ("float32",)),
                "ptq_int8",
                "ptq_mixed",
                "qat_int8",
            )
        name = f"mixed_{count}"
        out = work / name
        reuse = args.reuse and (out / "tflite" / "manifest.json").exists()
        if out.exists() and not reuse:
            shutil.rmtree(out)
        options = TFLiteSetOptions(
            convert=replace(base_convert, variants=variants, mixed_float_layers=count,
                            mixed_float_patterns=()),
            postprocess=postprocess,
        )  # fmt: skip
        since = len(tap.messages)
        t0 = time.perf_counter()
        if reuse:  # only the evaluation and the tables again; no conversion timings
            manifest = json.loads((out / "tflite" / "manifest.json").read_text())
        else:
            manifest = convert_trained_model(
                str(model_dir), str(out / "tflite"), options,
                qat_model_dir=str(qat_dir) if "qat_int8" in variants else None,
                examples_uri=str(examples),
            )  # fmt: skip
        convert_s = None if reuse else time.perf_counter() - t0
        calibration = tap.calibration_seconds(since)
        layer_doc = json.loads((out / "tflite" / "layer_errors.json").read_text())
        t0 = time.perf_counter()
        from model_maker.core.evaluate_options import EvaluateOptions

        rule = replace(
            evaluate or EvaluateOptions(), candidate="ptq_mixed", latency_runs=latency_runs
        )
        result = evaluate_artifacts(
            str(examples), str(out / "tflite"), str(out / "evaluation"), rule
        )
        evaluate_s = time.perf_counter() - t0
        sets.append(
            {
                "name": name,
                "float_layers_asked": count,
                "variants": list(variants),
                "tflite_dir": str(out / "tflite"),
                "manifest": manifest,
                "layer_errors": layer_doc,
                "calibration_seconds": calibration[0] if calibration else None,
                "layer_error_seconds": layer_doc.get("seconds"),
                "convert_seconds": convert_s,
                "evaluate_seconds": evaluate_s,
                "metrics": result.variants,
            }
        )
        print(
            f"set {name}: convert {_fmt(convert_s)} s (calibration {calibration}), "
            f"layer errors {layer_doc.get('seconds')} s, evaluate {evaluate_s:.1f} s"
        )

    # --- per-variant rows ---------------------------------------------------------------
    rows = []
    signatures = {}
    for s in sets:
        entries = {e["variant"]: e for e in s["manifest"]["variants"]}
        for m in s["metrics"]:
            variant = m["variant"]
            label = f"ptq_mixed N={s['float_layers_asked']}" if variant == "ptq_mixed" else variant
            entry = entries.get(variant, {})
            path = pathlib.Path(s["tflite_dir"]) / entry.get("file", f"{variant}.tflite")
            signature = op_signature(path)
            signatures[label] = signature
            rows.append(
                {
                    "variant": label,
                    "set": s["name"],
                    "path": str(path),
                    "AP": m["metrics"].get("AP"),
                    "AP50": m["metrics"].get("AP50"),
                    "bytes": m.get("bytes"),
                    "latency": m.get("latency"),
                    "num_ops": len(signature),
                    "float_ops": float_op_count(signature),
                    "float_layers": [
                        f["layer"] or f["tensor"] for f in entry.get("float_layers", [])
                    ],
                    "float_layer_ops": [f["op"] for f in entry.get("float_layers", [])],
                }
            )
    order = ["float32", "ptq_int8", *(f"ptq_mixed N={c}" for c in counts), "qat_int8"]
    rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))

    first = sets[0]
    title = (
        f"{config.name}: {config.model.name} at {config.model.image_size}px" if config else "run"
    )
    print(f"\n{title}, {rule.split} split, {first['metrics'][0]['num_images']} images; "
          f"latency: median / p90 of {latency_runs} invokes, 1 thread")  # fmt: skip
    print(f"{'variant':16s} {'AP':>7s} {'AP50':>7s} {'bytes':>10s} {'latency ms':>15s} "
          f"{'ops':>5s} {'float ops':>9s}  float layers")  # fmt: skip
    for r in rows:
        print(
            f"{r['variant']:16s} {r['AP']:7.4f} {r['AP50']:7.4f} {r['bytes']:10d} "
            f"{_ms(r['latency']):>15s} {r['num_ops']:5d} {r['float_ops']:9d}  "
            f"{', '.join(r['float_layers']) or '-'}"
        )

    doc = first["layer_errors"]
    print(
        f"\nPer-layer int8 error of ptq_int8 (top {args.top} of {len(doc['layers'])} quantized "
        f"tensors; {doc['samples']} calibration images; by {doc['rank_metric']})"
    )
    print(f"{'rank':>4s} {'Keras layer':44s} {'op':22s} {'rmse/scale':>10s} {'mean_err':>10s} "
          f"{'max_abs_err':>11s}")  # fmt: skip
    for layer in doc["layers"][: args.top]:
        print(
            f"{layer['rank']:4d} {(layer['layer'] or layer['tensor'])[:44]:44s} "
            f"{layer['op'][:22]:22s} {layer['rmse_over_scale']:10.3f} {layer['mean_error']:10.4f} "
            f"{layer['max_abs_error']:11.4f}"
        )

    # --- checks and timings -------------------------------------------------------------
    rankings = {s["name"]: [x["tensor"] for x in s["layer_errors"]["layers"]] for s in sets}
    same_ranking = len({tuple(r) for r in rankings.values()}) == 1
    by_variant = {r["variant"]: r for r in rows}
    n0 = by_variant.get("ptq_mixed N=0")
    ptq = by_variant.get("ptq_int8")
    check: dict[str, Any] = {"layer_ranking_identical_across_sets": same_ranking}
    if n0 and ptq:
        op_kinds = collections.Counter
        check.update(
            {
                "ops_identical": signatures["ptq_mixed N=0"] == signatures["ptq_int8"],
                "op_counts_ptq_int8": dict(op_kinds(f"{o}:{d}" for o, d in signatures["ptq_int8"])),
                "op_counts_mixed_0": dict(
                    op_kinds(f"{o}:{d}" for o, d in signatures["ptq_mixed N=0"])
                ),
                "files_identical": _sha256(n0["path"]) == _sha256(ptq["path"]),
                "AP_difference": n0["AP"] - ptq["AP"],
                "AP50_difference": n0["AP50"] - ptq["AP50"],
                "bytes_difference": n0["bytes"] - ptq["bytes"],
            }
        )
        flag = (
            ""
            if abs(check["AP_difference"]) <= 0.005
            else "  <-- differs by more than 0.5 AP points"
        )
        print(f"\nptq_mixed N=0 vs ptq_int8: same ops {check['ops_identical']}, "
              f"AP {check['AP_difference']:+.4f}, AP50 {check['AP50_difference']:+.4f}, "
              f"bytes {check['bytes_difference']:+d}, files identical {check['files_identical']}"
              f"{flag}")  # fmt: skip
    print(f"layer ranking identical in every set: {same_ranking}")
    print(f"\n{'set':10s} {'calibration s':>13s} {'layer errors s':>14s} {'convert s':>9s} "
          f"{'evaluate s':>10s}  variants")  # fmt: skip
    for s in sets:
        cal = "n/a" if s["calibration_seconds"] is None else f"{s['calibration_seconds']:.1f}"
        print(f"{s['name']:10s} {cal:>13s} {s['layer_error_seconds']:14.1f} "
              f"{_fmt(s['convert_seconds']):>9s} {s['evaluate_seconds']:10.1f}  "
              f"{', '.join(s['variants'])}")  # fmt: skip
    total = time.perf_counter() - wall
    load = started["load_average_at_start"]
    print(f"bench wall time {total:.1f} s; load average at start {load}, at end {os.getloadavg()}")

    out_path = pathlib.Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {
                "machine": started,
                "load_average_at_end": os.getloadavg(),
                "args": vars(args),
                "inputs": {
                    "model_dir": str(model_dir),
                    "qat_model_dir": str(qat_dir),
                    "examples": str(examples),
                },
                "convert_settings": {
                    "representative_samples": base_convert.representative_samples,
                    "layer_error_samples": base_convert.layer_error_samples,
                    "int8_input_type": base_convert.int8_input_type,
                    "with_nms": base_convert.with_nms,
                },
                "latency_runs": latency_runs,
                "eval_images": first["metrics"][0]["num_images"],
                "variants": rows,
                "top_layers": doc["layers"][: args.top],
                "layer_error_samples": doc["samples"],
                "quantized_tensors": len(doc["layers"]),
                "checks": check,
                "sets": [
                    {
                        k: s[k]
                        for k in (
                            "name",
                            "float_layers_asked",
                            "variants",
                            "tflite_dir",
                            "calibration_seconds",
                            "layer_error_seconds",
                            "convert_seconds",
                            "evaluate_seconds",
                        )
                    }
                    | {"metrics": s["metrics"]}
                    for s in sets
                ],  # fmt: skip
                "wall_seconds": total,
            },
            indent=2,
        )
    )
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
