"""QAT on raccoon: float AP50 vs fake-quant AP50 after QAT (same run, same eval split).

End to end from the library: ingest ../shared/datasets/raccoon (VOC) into an
Examples folder, train the float EfficientDet-Lite0 briefly
(``train_from_examples``), then QAT (``train_qat``: quantize, calibrate,
fine-tune with QATHParams) and evaluate the float and the fake-quant models on
the eval split with the same COCO evaluation. Reports AP/AP50 of both, the
difference, and the QAT wall time (quantize + calibrate + fine-tune).

The float model starts from the offline ImageNet backbone (``--uri imagenet``,
after ``make pretrained``; ``--uri ""`` trains from random weights) and trains
every layer with the recipe of bench_pretrained_accuracy.py (256 px, 30
epochs, batch 8, peak learning rate 0.04). With ``--work DIR`` the Examples and
the float model are kept and reused, so QAT settings can be compared on one
float model. Prints a table; writes bench/results/qat.json with machine details.

Run: .venv/bin/python bench/bench_qat.py [--image-size 256] [--float-epochs 30]
     [--qat-epochs 3] [--batch-size 8] [--qat-learning-rate 0.01] [--uri imagenet]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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
RESULTS = REPO / "bench" / "results" / "qat.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "raccoon"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--float-epochs", type=int, default=30)
    parser.add_argument("--qat-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--qat-learning-rate", type=float, default=0.01)
    parser.add_argument("--uri", default="imagenet", help="pretrained weights for the float model")
    parser.add_argument("--work", default="", help="folder for Examples and models (temp)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = machine_info("tensorflow", "tf-keras", "tensorflow-model-optimization")

    from model_maker.core.data.ingest import IngestOptions, ingest
    from model_maker.core.options import ModelOptions, TrainOptions
    from model_maker.core.qat import QATHParams
    from model_maker.object_detector.dataloader import DataLoader
    from model_maker.object_detector.model_io import load_trained_model
    from model_maker.object_detector.qat_trainer import spec_for, train_qat
    from model_maker.object_detector.trainer import TrainerOptions, train_from_examples

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_qat_"))
    examples = work / "examples"
    t0 = time.perf_counter()
    if not (examples / "label_map.json").exists():
        ingest(IngestOptions(format="voc", input=args.dataset, output=str(examples)))
    ingest_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    float_dir = work / "float_model"
    if not (float_dir / "keras" / "weights.h5").exists():
        train_from_examples(
            str(examples),
            str(float_dir),
            str(work / "float_run"),
            TrainerOptions(
                model=ModelOptions(
                    name="efficientdet_lite0", uri=args.uri, image_size=args.image_size
                ),
                train=TrainOptions(
                    epochs=args.float_epochs,
                    batch_size=args.batch_size,
                    learning_rate=0.08 * args.batch_size / 64 * 4,  # the peak at this batch
                    var_freeze_expr="",
                    moving_average_decay=0.0,
                ),
            ),
        )
    float_s = time.perf_counter() - t0

    float_model, config = load_trained_model(str(float_dir))
    spec = spec_for(config)
    train = DataLoader.from_examples(str(examples), "train")
    val = DataLoader.from_examples(str(examples), "eval")
    hparams = QATHParams(
        learning_rate=args.qat_learning_rate,
        batch_size=args.batch_size,
        epochs=args.qat_epochs,
        decay_steps=max(math.ceil(train.size / args.batch_size), 1),
        decay_rate=0.96,
    )
    result = train_qat(
        spec,
        float_model,
        list(train.files),
        hparams,
        train_size=train.size,
        eval_files=list(val.files),
        eval_json_file=val.annotations_json or None,
        evaluate_float=True,
    )
    rows = [
        ("float", result.float_metrics["AP"], result.float_metrics["AP50"]),
        ("fake-quant after QAT", result.metrics["AP"], result.metrics["AP50"]),
    ]
    gap = result.float_metrics["AP50"] - result.metrics["AP50"]
    print(f"\nEfficientDet-Lite0 at {args.image_size}px on raccoon "
          f"({train.size} train / {val.size} eval images)")  # fmt: skip
    print(f"{'model':24s} {'AP':>7s} {'AP50':>7s}")
    for name, ap, ap50 in rows:
        print(f"{name:24s} {ap:7.4f} {ap50:7.4f}")
    print(f"AP50 float - fake-quant: {gap:+.4f} (target |gap| <= 0.02)")
    print(f"QAT wall time: {result.seconds:.1f} s for {result.steps} steps "
          f"(float training {float_s:.1f} s, ingest {ingest_s:.1f} s)")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": started,
                "args": vars(args),
                "train_images": train.size,
                "eval_images": val.size,
                "float_metrics": result.float_metrics,
                "qat_metrics": result.metrics,
                "ap50_gap": gap,
                "qat_seconds": result.seconds,
                "qat_steps": result.steps,
                "qat_hparams": result.hparams.as_dict(),
                "qat_history": result.history,
                "float_train_seconds": float_s,
                "ingest_seconds": ingest_s,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
