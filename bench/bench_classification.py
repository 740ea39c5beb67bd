"""Float vs PTQ vs QAT top-1 of the four classifier families on hymenoptera (ants vs bees).

End to end from the library, the calls the pipeline's components make:
ingest ../shared/datasets/hymenoptera (its own train/ and val/ class
folders) once, then per architecture ``train_from_examples`` (float),
``qat_from_examples`` (QAT), ``convert_trained_model`` (float32, ptq_int8,
qat_int8 with uint8 input) and ``evaluate_artifacts`` (Keras float model and
every TFLite file through LiteRT on the 153 val images, latency 1 thread).

EfficientNet-Lite0 starts from the offline ImageNet weights (``make
pretrained``) and trains its new logits layer only, the recipe of
configs/hymenoptera.yaml. MobileNetV2, MobileNetV3.5-MultiAVG and ResNet50
have no offline ImageNet weights here (no network), so they train from random
initialisation, every layer, at a smaller input for time: on 245 images their
top-1 is low, and reported as it is, with epochs and seconds.

Prints a table; writes bench/results/classification.json with machine details.

Run: .venv/bin/python bench/bench_classification.py [--archs a,b] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass

from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "classification.json"


@dataclass(frozen=True)
class Recipe:
    """How one architecture is trained in this bench."""

    name: str
    uri: str
    image_size: int
    epochs: int
    batch_size: int
    learning_rate: float
    do_fine_tuning: bool
    qat_epochs: int
    qat_learning_rate: float


RECIPES = {
    r.name: r
    for r in (
        Recipe("efficientnet_lite0", "imagenet", 224, 10, 16, 0.02, False, 3, 0.01),
        Recipe("mobilenet_v2", "", 128, 30, 16, 0.05, True, 3, 0.005),
        Recipe("mobilenet_multi_avg", "", 128, 30, 16, 0.05, True, 3, 0.005),
        Recipe("resnet_50", "", 128, 15, 16, 0.05, True, 2, 0.005),
    )
}


def run_one(recipe: Recipe, examples: str, work: pathlib.Path) -> dict:
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.evaluate_options import EvaluateOptions
    from model_maker.core.options import ModelOptions, TrainOptions
    from model_maker.core.qat_hparams import QATHParams
    from model_maker.image_classifier.evaluator import evaluate_artifacts
    from model_maker.image_classifier.options import ClassifierTrainerOptions
    from model_maker.image_classifier.qat_trainer import qat_from_examples
    from model_maker.image_classifier.tflite_set import convert_trained_model
    from model_maker.image_classifier.trainer import train_from_examples

    base = work / recipe.name
    seconds = {}
    options = ClassifierTrainerOptions(
        model=ModelOptions(
            task="image_classification",
            name=recipe.name,
            uri=recipe.uri,
            image_size=recipe.image_size,
            hparams={"do_fine_tuning": recipe.do_fine_tuning},
        ),
        train=TrainOptions(
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            learning_rate=recipe.learning_rate,
            warmup_epochs=1.0,
            var_freeze_expr="",
        ),
    )
    t0 = time.perf_counter()
    train_from_examples(examples, str(base / "model"), str(base / "run"), options)
    seconds["float_training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    steps = -(-245 // recipe.batch_size)
    qat = QATHParams(
        learning_rate=recipe.qat_learning_rate,
        batch_size=recipe.batch_size,
        epochs=recipe.qat_epochs,
        decay_steps=steps,
        decay_rate=0.9,
    )
    qat_from_examples(examples, str(base / "model"), str(base / "qat"), qat, export_serving=False)
    seconds["qat"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    convert_trained_model(
        str(base / "model"),
        str(base / "tflite"),
        ConvertOptions(variants=("float32", "ptq_int8", "qat_int8"), representative_samples=100),
        qat_model_dir=str(base / "qat"),
        examples_uri=examples,
    )
    seconds["convert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate_artifacts(
        examples,
        str(base / "tflite"),
        str(base / "evaluation"),
        EvaluateOptions(metric="top1", latency_runs=20),
        model_dir=str(base / "model"),
    )
    seconds["evaluate"] = time.perf_counter() - t0
    return {
        "recipe": recipe.__dict__,
        "seconds": seconds,
        "variants": {
            e["variant"]: {
                "top1": e["metrics"]["top1"],
                "macro_f1": e["metrics"]["macro_f1"],
                "bytes": e["bytes"],
                "latency_ms": (e["latency"] or {}).get("median_ms"),
            }
            for e in result.variants
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default=str(REPO.parent / "shared" / "datasets" / "hymenoptera")
    )
    parser.add_argument("--archs", default=",".join(RECIPES), help="comma-separated spec names")
    parser.add_argument("--work", default="", help="folder for Examples and models (temp)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = machine_info("tensorflow", "tf-keras", "tensorflow-model-optimization")

    from model_maker.core.data.ingest import IngestOptions, ingest

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_cls_"))
    examples = work / "examples"
    t0 = time.perf_counter()
    if not (examples / "label_map.json").exists():
        ingest(
            IngestOptions(
                format="folder",
                input=args.dataset,
                output=str(examples),
                split_image_dirs={"train": "train", "eval": "val"},
            )
        )
    ingest_s = time.perf_counter() - t0
    results = {}
    for name in args.archs.split(","):
        results[name] = run_one(RECIPES[name], str(examples), work)

    print("\nhymenoptera: 245 train / 153 val images, top-1 % (val), 1-thread latency ms")
    header = (
        f"{'model':20s} {'init':9s} {'px':>4s} {'ep':>3s} {'float':>6s} {'f32':>6s} "
        f"{'ptq':>6s} {'qat':>6s} {'qat-fl':>7s} {'int8 KB':>8s} {'f32 ms':>7s} "
        f"{'int8 ms':>7s} {'train s':>8s} {'qat s':>6s}"
    )
    print(header)
    for name, row in results.items():
        r, v, s = row["recipe"], row["variants"], row["seconds"]
        print(
            f"{name:20s} {r['uri'] or 'random':9s} {r['image_size']:4d} {r['epochs']:3d} "
            f"{100 * v['keras_float']['top1']:6.2f} {100 * v['float32']['top1']:6.2f} "
            f"{100 * v['ptq_int8']['top1']:6.2f} {100 * v['qat_int8']['top1']:6.2f} "
            f"{100 * (v['qat_int8']['top1'] - v['keras_float']['top1']):+7.2f} "
            f"{v['qat_int8']['bytes'] / 1024:8.0f} {v['float32']['latency_ms']:7.2f} "
            f"{v['qat_int8']['latency_ms']:7.2f} {s['float_training']:8.0f} {s['qat']:6.0f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": started,
                "finished_load_average": os.getloadavg(),
                "dataset": args.dataset,
                "ingest_seconds": ingest_s,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
