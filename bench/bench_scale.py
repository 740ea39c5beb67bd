"""COCO-scale cost model: per-image cost of each stage, fitted and extrapolated to COCO 2017.

Measures, on this machine, one worker (one process) per stage:

* ingest: ``model_maker.core.data.ingest.ingest`` (Beam DirectRunner, 1 worker,
  in_memory) of the first N images of one ``qatflow demo-data`` set (COCO JSON
  subsets, ``--counts``, default 200 / 1000 / 4000 at ``--image-px`` 256, the
  demo default), after one untimed warm-up ingest (its time, imports included,
  is kept as ``cold_start_s``);
* training: the Trainer's step (``DetectorTrainer.train_step`` under Keras
  ``fit``, optimizer built as ``EfficientDetSpec.train`` builds it, the
  tf.data input pipeline over the ingested records) of each Lite size at its
  own image size (Lite0..4: 320 / 384 / 448 / 512 / 640; random init, the
  library default ``TrainOptions.var_freeze_expr``; ``--batch`` images per step,
  ``--warmup`` untimed then ``--steps`` timed steps); at Lite0 also the whole
  model trained (``var_freeze_expr=''``) and the QAT step (``quantize_efficientdet``
  + ``calibrate_fake_quant``, every variable trained, ``qat_optimizer(QATHParams())``),
  both as ratios to the default float step;
* conversion: ``export_tflite_set`` (the TFLiteConverter's code: float32,
  ptq_int8, qat_int8, NMS inside, metadata, the ``layer_errors`` debugger pass)
  with ``--representative`` calibration images (default
  ``ConvertOptions.representative_samples``) at each Lite size in ``--sizes``;
* evaluation: ``run_detection`` (the Evaluator's Beam pipeline, 1 worker,
  in_memory, factories from ``variants_from_manifest`` as the Evaluator makes
  them: LiteRT, 1 thread) of each Lite0 variant over the N images' records,
  after a warm-up run; and ``TFLiteDetector.detect`` (resize + invoke + NMS
  read-out) timed per variant at every measured Lite size.

Fits ``seconds = start-up + per-image x N`` by least squares over the counts for
ingest and for each Lite0 evaluation variant (residuals reported). Evaluation
at a bigger Lite size k is the Lite0 fit plus ``detect(k) - detect(Lite0)`` per
image (the Beam, read and decode part does not depend on the model). A second,
``--coco-px`` (554 = sqrt(640 x 480), COCO's typical pixel count) set of
``--coco-check`` images is ingested and evaluated (float32) right after as many
``--image-px`` images: the per-image difference of the two runs is added to the
COCO extrapolation (decode and re-encode grow with pixels; the model input does not).

Sizes not in ``--sizes`` are extrapolated, and marked so, along the GFLOPs of
bench/results/model_size.json (90 classes): ``cost = c x GFLOPs^a`` through the
measured sizes (log-log least squares; ``a = 1`` when only Lite0 is measured,
which overestimates: the quick run's Lite0 + Lite4 gave a < 1 for every cost).

Extrapolation to COCO 2017 (118,287 train + 5,000 val images) on 1, 8, 64
workers, with ``scale_model`` (see there): ingest and evaluation are Beam stages
(start-up once, images shared); training is
``TrainOptions.epochs x 118,287 x float step`` + ``QATHParams().epochs x 118,287
x QAT step`` per image, data-parallel at ``--train-efficiency`` (ASSUMED 1.0:
linear; multi-worker speed-up is not measured here), plus the measured first
step (graph build); conversion runs once on one worker. A "worker" is one
process as measured here (this machine's cores; TF uses all of them in training,
LiteRT one thread in evaluation).

Assumptions, stated in the output too: detectors have ``--num-classes`` 90
(COCO's ids); per-image training cost is measured at small batches (the
library default is 64; a bigger batch costs no more per image on a CPU, so
this errs high); QAT at Lite k = float step at Lite k x the Lite0 QAT / float
ratio; the Trainer's periodic COCO evaluation during training and the
QATTrainer's final evaluation are not counted.

Prints the measurements, the fits and one table per Lite size (stage -> hours
at 1 / 8 / 64 workers, bottleneck); writes bench/results/scale.json with the
machine details and the load average at start and end.

The raw measurements are written first; ``--from-json FILE`` re-runs only the
fits, extrapolation and tables from a results file (e.g. with another
``--train-efficiency``). ``phase_seconds`` in the JSON says where the time went.

Full run (Lite0..4 measured, 200 / 1000 / 4000 images; about 15 min idle on 2 cores,
estimated from partial runs' phase times: about 23 min at load average 3):
    .venv/bin/python bench/bench_scale.py
Quick check (Lite0 measured, Lite1..4 by GFLOPs; 50 / 100 / 200 images,
8 calibration images, 2 timed steps of batch 2; about 5 min loaded):
    .venv/bin/python bench/bench_scale.py --quick [--sizes 0,4]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import scale_model as sm
from bench_ingest import coco_subset
from machine_info import machine_info

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "scale.json"
MODEL_SIZE = REPO / "bench" / "results" / "model_size.json"
IMAGE_SIZES = {0: 320, 1: 384, 2: 448, 3: 512, 4: 640}
VARIANTS = ("float32", "ptq_int8", "qat_int8")
WORKERS = (1, 8, 64)
BEAM_ARGS = ("--direct_num_workers=1", "--direct_running_mode=in_memory")

FULL = {
    "counts": "200,1000,4000",
    "sizes": "0,1,2,3,4",
    "batch": "4,4,4,2,2",
    "warmup": 2,
    "steps": "4,4,3,3,2",
    "representative": None,  # ConvertOptions.representative_samples
    "coco_check": 200,
    "detect_runs": 20,
}
QUICK = {
    "counts": "50,100,200",
    "sizes": "0",
    "batch": "2",
    "warmup": 1,
    "steps": "2",
    "representative": 8,
    "coco_check": 100,
    "detect_runs": 5,
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _gflops() -> dict[int, float]:
    """Lite k -> GFLOPs with 90 classes, from bench_model_size.py's results (may be empty)."""
    try:
        rows = json.loads(MODEL_SIZE.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return {}
    return {
        int(r["model"][-1]): float(r["gflops"])
        for r in rows
        if r.get("num_classes") == 90 and r.get("gflops")
    }


# --- ingest ------------------------------------------------------------------------


def ingest_once(images_dir: str, annotations: str, output: str) -> dict:
    from model_maker.core.data.ingest import IngestOptions, ingest

    options = IngestOptions(format="coco", input=images_dir, annotations=annotations, output=output)
    start = time.perf_counter()
    result = ingest(options, list(BEAM_ARGS))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": sum(result.images.values()), "output": output}


# --- training ----------------------------------------------------------------------


def _step_times(trainer, dataset, warmup: int, steps: int) -> list[float]:
    from bench_train_throughput import make_step_timer

    timer = make_step_timer()
    trainer.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
    return timer.times


def _summary(times: list[float], warmup: int, batch: int, **extra) -> dict:
    timed = times[warmup:]
    per_step = sum(timed) / len(timed)
    return {
        **extra,
        "batch": batch,
        "first_step_s": times[0],
        "warmup_steps": warmup,
        "steps_timed": len(timed),
        "step_times_s": times,
        "seconds_per_step": per_step,
        "seconds_per_image": per_step / batch,
    }


def float_trainer(spec, model, freeze: str, steps_per_epoch: int = 1000):
    """The Trainer's compiled step, built as ``EfficientDetSpec.train`` builds it."""
    from model_maker.object_detector import train_lib

    hp = spec.hparams
    schedule = train_lib.learning_rate_schedule(
        float(hp["learning_rate"]),
        float(hp["lr_warmup_init"]),
        int(hp["lr_warmup_epoch"] * steps_per_epoch),
        spec.epochs * steps_per_epoch,
    )
    optimizer = train_lib.build_optimizer(
        schedule,
        momentum=float(hp["momentum"]),
        clip_gradients_norm=float(hp["clip_gradients_norm"]),
        moving_average_decay=float(spec.moving_average_decay),
    )
    optimizer.build(model.trainable_variables)
    trainer = train_lib.DetectorTrainer(
        model, spec._loss(), weight_decay=float(hp["weight_decay"]), var_freeze_expr=freeze
    )
    trainer.compile(optimizer=optimizer, steps_per_execution=spec.steps_per_execution)
    return trainer


def measure_model(
    level: int,
    args: argparse.Namespace,
    examples: str,
    batch: int,
    steps: int,
    with_extras: bool,
    work: str,
) -> dict:
    """Training step(s), conversion and per-variant detect time of EfficientDet-Lite``level``."""
    import tf_keras as keras

    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.evaluation import variants_from_manifest
    from model_maker.core.litert_detector import measure_latency
    from model_maker.core.options import TrainOptions
    from model_maker.core.qat import QATHParams, calibrate_fake_quant
    from model_maker.object_detector.dataloader import split_files
    from model_maker.object_detector.efficientdet_spec import EfficientDetSpec
    from model_maker.object_detector.options import TFLiteSetOptions
    from model_maker.object_detector.qat_model import quantize_efficientdet
    from model_maker.object_detector.qat_trainer import qat_optimizer
    from model_maker.object_detector.tflite_set import export_tflite_set, representative_images

    keras.backend.clear_session()
    out: dict = {"lite": level, "image_size": IMAGE_SIZES[level], "batch": batch}
    freeze = TrainOptions.var_freeze_expr
    spec = EfficientDetSpec(
        f"efficientdet-lite{level}",
        uri="",
        hparams={"num_classes": args.num_classes},
        batch_size=batch,
        var_freeze_expr=freeze,
        model_dir=os.path.join(work, f"model_lite{level}"),
        verbose=0,
    )
    assert spec.image_size == IMAGE_SIZES[level], spec.image_size
    train_files = split_files(examples, "train")
    dataset = spec.make_dataset(train_files, batch, is_training=True).repeat()

    start = time.perf_counter()
    model = spec.create_model()
    out["build_s"] = time.perf_counter() - start
    trainer = float_trainer(spec, model, freeze)
    out["train"] = _summary(
        _step_times(trainer, dataset, args.warmup, steps), args.warmup, batch, freeze=freeze
    )
    log(
        f"Lite{level} train step ({freeze}): {out['train']['seconds_per_image']:.3f} s/image "
        f"(first step {out['train']['first_step_s']:.1f} s)"
    )
    if with_extras:
        trainer = float_trainer(spec, model, "")
        out["train_all"] = _summary(
            _step_times(trainer, dataset, args.warmup, steps), args.warmup, batch, freeze=""
        )
        log(f"Lite{level} train step (all): {out['train_all']['seconds_per_image']:.3f} s/image")

    # the QAT model: the QATTrainer's wrap and range calibration (needed for qat_int8 too)
    start = time.perf_counter()
    qat = quantize_efficientdet(model)
    calib = spec.make_dataset(train_files, batch_size=batch, is_training=False)
    calibrate_fake_quant(qat, (images for images, _ in calib.take(2)))
    out["qat_wrap_s"] = time.perf_counter() - start
    if with_extras:
        from model_maker.object_detector import train_lib

        hparams = QATHParams()
        trainer = train_lib.DetectorTrainer(
            qat,
            spec._loss(),
            weight_decay=float(spec.hparams["weight_decay"]),
        )
        trainer.compile(optimizer=qat_optimizer(hparams, spec))
        out["train_qat"] = _summary(
            _step_times(trainer, dataset, args.warmup, steps),
            args.warmup,
            batch,
            freeze="",
        )
        log(f"Lite{level} QAT step: {out['train_qat']['seconds_per_image']:.3f} s/image")

    samples = args.representative or ConvertOptions.representative_samples
    options = TFLiteSetOptions(
        convert=ConvertOptions(variants=VARIANTS, representative_samples=samples)
    )
    tflite_dir = os.path.join(work, f"tflite_lite{level}")
    start = time.perf_counter()
    representative = representative_images(examples, spec.image_size, samples)
    export_tflite_set(
        tflite_dir,
        model,
        anchors=spec.anchors,
        num_classes=spec.num_classes,
        label_map=spec.label_map,
        options=options,
        qat_model=qat,
        representative_data=representative,
    )
    out["convert"] = {
        "seconds": time.perf_counter() - start,
        "representative_samples": samples,
        "variants": list(VARIANTS),
    }
    log(f"Lite{level} TFLite set ({samples} calibration images): {out['convert']['seconds']:.1f} s")

    # detect(image) as the Evaluator's DoFn calls it, on one decoded demo image
    from model_maker.core.evaluation import EvalSource, decode_image, source_images

    _, encoded = next(
        source_images(EvalSource(record_files=(os.path.join(examples, "Split-*", "*.gz"),)))
    )
    image = decode_image(encoded)
    out["detect_ms"] = {}
    for variant in variants_from_manifest(tflite_dir):
        detector = variant.factory()
        latency = measure_latency(lambda d=detector: d.detect(image), runs=args.detect_runs)
        out["detect_ms"][variant.name] = latency.median_ms
    out["tflite_dir"] = tflite_dir
    log(f"Lite{level} detect ms: " + ", ".join(f"{k} {v:.1f}" for k, v in out["detect_ms"].items()))
    return out


# --- evaluation --------------------------------------------------------------------


def evaluate_once(tflite_dir: str, variant: str, examples: str) -> dict:
    from model_maker.core.evaluation import (
        BeamOptions,
        EvalSource,
        run_detection,
        variants_from_manifest,
    )

    (entry,) = variants_from_manifest(tflite_dir, only=(variant,))
    source = EvalSource(record_files=(os.path.join(examples, "Split-*", "*.gz"),))
    start = time.perf_counter()
    _, count = run_detection(entry.factory, source, BeamOptions(num_workers=1))
    return {"seconds": time.perf_counter() - start, "images": count}


# --- extrapolation -----------------------------------------------------------------


def build_stages(
    per_model: dict,
    ingest_fit: sm.LinearFit,
    eval_fits: dict[str, sm.LinearFit],
    lite0: dict,
    coco_extra: dict,
    efficiency: float,
) -> list[sm.StageCost]:
    """The pipeline's stages at COCO 2017 scale for one Lite size (module doc)."""
    from model_maker.core.options import TrainOptions
    from model_maker.core.qat import QATHParams

    total_images = sm.COCO_TRAIN_IMAGES + sm.COCO_VAL_IMAGES
    ingest_per = ingest_fit.per_item_s + coco_extra["ingest_per_image_s"]
    # a fit's start-up can come out slightly negative on a noisy machine: counted as 0
    stages = [
        sm.StageCost(
            "ingest (ExampleGen)", max(ingest_fit.startup_s, 0.0), ingest_per, total_images
        )
    ]
    startup = per_model["train"]["first_step_s"] + per_model.get("build_s", 0.0)
    stages.append(
        sm.StageCost(
            f"train float ({TrainOptions.epochs} ep)",
            startup,
            per_model["train"]["seconds_per_image"],
            TrainOptions.epochs * sm.COCO_TRAIN_IMAGES,
            efficiency=efficiency,
        )
    )
    stages.append(
        sm.StageCost(
            f"train QAT ({QATHParams().epochs} ep)",
            startup + per_model["qat_wrap_s"],
            per_model["qat_seconds_per_image"],
            QATHParams().epochs * sm.COCO_TRAIN_IMAGES,
            efficiency=efficiency,
        )
    )
    stages.append(sm.StageCost("convert (3 variants)", per_model["convert_s"], 0.0, 0, False))
    eval_start = sum(max(eval_fits[v].startup_s, 0.0) for v in VARIANTS)
    eval_per = sum(
        eval_fits[v].per_item_s
        + (per_model["detect_ms"][v] - lite0["detect_ms"][v]) / 1000.0
        + coco_extra["eval_per_image_s"]
        for v in VARIANTS
    )
    stages.append(sm.StageCost("evaluate (3 variants)", eval_start, eval_per, sm.COCO_VAL_IMAGES))
    return stages


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, Lite0 only")
    parser.add_argument("--counts", help=f"image counts (default {FULL['counts']})")
    parser.add_argument("--sizes", help=f"Lite sizes measured (default {FULL['sizes']})")
    parser.add_argument("--batch", help="training batch per size, one or one per size")
    parser.add_argument("--steps", help="timed training steps, one or one per size")
    parser.add_argument("--warmup", type=int, help="untimed training steps (graph build)")
    parser.add_argument("--representative", type=int, help="PTQ calibration images")
    parser.add_argument("--coco-check", type=int, help="images of the COCO-pixel check")
    parser.add_argument("--detect-runs", type=int, help="timed detect() calls per variant")
    parser.add_argument("--image-px", type=int, default=256, help="demo image side (pixels)")
    parser.add_argument("--coco-px", type=int, default=554, help="COCO-like image side")
    parser.add_argument("--num-classes", type=int, default=90, help="detector classes (COCO: 90)")
    parser.add_argument("--train-efficiency", type=float, default=1.0)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument(
        "--from-json", help="re-analyse the raw measurements of a results file (no measuring)"
    )
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    for key, value in profile.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.sizes.startswith("0"):
        raise SystemExit("--sizes must start with 0 (Lite0 is the evaluation reference)")

    def per_size(text: str) -> dict[int, int]:
        values = [int(v) for v in str(text).split(",")]
        if len(values) == 1:
            values = values * len(IMAGE_SIZES)
        return dict(zip(sorted(IMAGE_SIZES), values, strict=False))

    args.batches, args.steps_by_size = per_size(args.batch), per_size(args.steps)
    return args


def measure(args: argparse.Namespace) -> dict:
    """Run every measurement of the module doc; the raw record (also written to --output)."""
    counts = [int(c) for c in args.counts.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    batches, steps = args.batches, args.steps_by_size

    import model_maker  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.data.demo_data import generate_demo_data

    if args.representative is None:
        args.representative = ConvertOptions.representative_samples

    info = machine_info("tensorflow", "tf-keras", "apache-beam", "ai-edge-litert")
    wall = time.perf_counter()
    record: dict = {
        "benchmark": "scale",
        "mode": "quick" if args.quick else "full",
        "settings": {k: getattr(args, k) for k in (*FULL, "image_px", "coco_px", "num_classes")},
        "machine": info,
    }
    phases: dict[str, float] = {}
    record["phase_seconds"] = phases
    mark = [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        phases[name] = now - mark[0]
        mark[0] = now

    work = tempfile.mkdtemp(prefix="bench_scale_")
    try:
        start = time.perf_counter()
        data = generate_demo_data(
            os.path.join(work, "data"), num_images=max(counts), image_size=args.image_px
        )
        coco = generate_demo_data(
            os.path.join(work, "coco_px"), num_images=args.coco_check, image_size=args.coco_px
        )
        log(
            f"demo data: {max(counts)} + {args.coco_check} images "
            f"in {time.perf_counter() - start:.0f} s"
        )

        phase("demo_data")
        # ingest: warm-up, then each count
        warm = coco_subset(data.annotations, 20, os.path.join(work, "warm.json"))
        cold = ingest_once(data.images_dir, warm, os.path.join(work, "ingest_warm"))
        ingest_runs = []
        for count in counts:
            subset = coco_subset(data.annotations, count, os.path.join(work, f"n{count}.json"))
            run = ingest_once(data.images_dir, subset, os.path.join(work, f"ingest_{count}"))
            assert run["images"] == count, run
            ingest_runs.append({"n": count, **run})
            log(f"ingest {count}: {run['seconds']:.1f} s")
        # the COCO-pixel check: the same number of demo-size images, then COCO-size ones
        ref = coco_subset(data.annotations, args.coco_check, os.path.join(work, "ref.json"))
        ref_ingest = ingest_once(data.images_dir, ref, os.path.join(work, "ingest_ref"))
        coco_ingest = ingest_once(
            coco.images_dir, coco.annotations, os.path.join(work, "ingest_coco")
        )
        ingest_fit = sm.fit_linear(
            [r["n"] for r in ingest_runs], [r["seconds"] for r in ingest_runs]
        )
        record["ingest"] = {
            "cold_start_s": cold["seconds"],
            "runs": ingest_runs,
            "fit": ingest_fit.as_dict(),
            "coco_px_run": {"n": args.coco_check, **coco_ingest},
            "image_px_reference_run": {"n": args.coco_check, **ref_ingest},
        }

        phase("ingest")
        # models: training step, conversion, detect time
        examples = ingest_runs[0]["output"]
        models = {}
        for level in sizes:
            models[level] = measure_model(
                level, args, examples, batches[level], steps[level], level == 0, work
            )
            phase(f"model_lite{level}")
        lite0 = models[0]

        # evaluation of each Lite0 variant at each count
        tflite0 = lite0["tflite_dir"]
        evaluate_once(tflite0, "float32", os.path.join(work, "ingest_warm"))  # warm-up
        eval_runs: dict[str, list] = {v: [] for v in VARIANTS}
        for variant in VARIANTS:
            for run in ingest_runs:
                result = evaluate_once(tflite0, variant, run["output"])
                assert result["images"] == run["n"], result
                eval_runs[variant].append({"n": run["n"], **result})
                log(f"evaluate Lite0 {variant} {run['n']}: {result['seconds']:.1f} s")
        eval_fits = {
            v: sm.fit_linear([r["n"] for r in runs], [r["seconds"] for r in runs])
            for v, runs in eval_runs.items()
        }
        ref_eval = evaluate_once(tflite0, "float32", ref_ingest["output"])
        coco_eval = evaluate_once(tflite0, "float32", coco_ingest["output"])
        phase("evaluate")
        record["evaluate_lite0"] = {
            "runs": eval_runs,
            "fits": {v: f.as_dict() for v, f in eval_fits.items()},
            "coco_px_run_float32": {"n": args.coco_check, **coco_eval},
            "image_px_reference_run_float32": {"n": args.coco_check, **ref_eval},
        }
        n = args.coco_check
        coco_extra = {  # paired runs of n images each: the start-up cancels out
            "ingest_per_image_s": max((coco_ingest["seconds"] - ref_ingest["seconds"]) / n, 0.0),
            "eval_per_image_s": max((coco_eval["seconds"] - ref_eval["seconds"]) / n, 0.0),
        }
        record["coco_pixel_correction"] = {
            **coco_extra,
            "note": f"({args.coco_px}px run - {args.image_px}px run) / {n} images, clipped at 0",
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["models"] = {str(k): m for k, m in models.items()}
    record["wall_seconds"] = time.perf_counter() - wall
    info["load_average_at_end"] = os.getloadavg()
    _write(record, args.output)  # the raw measurements first: --from-json re-reports them
    return record


def _write(record: dict, output: str) -> None:
    out = pathlib.Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def analyse(record: dict, args: argparse.Namespace) -> None:
    """Fits, per-size costs, COCO extrapolation and the printed tables, from ``record``."""
    info = record["machine"]
    models = {int(k): m for k, m in record["models"].items()}
    lite0 = models[0]
    runs = record["ingest"]["runs"]
    counts = [r["n"] for r in runs]
    ingest_fit = sm.fit_linear(counts, [r["seconds"] for r in runs])
    eval_fits = {
        v: sm.fit_linear([r["n"] for r in rs], [r["seconds"] for r in rs])
        for v, rs in record["evaluate_lite0"]["runs"].items()
    }
    coco_extra = record["coco_pixel_correction"]
    coco_px = record["settings"]["coco_px"]
    quick = record["mode"] == "quick"
    # per-size costs, measured or extrapolated along GFLOPs from the measured sizes
    qat_ratio = lite0["train_qat"]["seconds_per_image"] / lite0["train"]["seconds_per_image"]
    all_ratio = lite0["train_all"]["seconds_per_image"] / lite0["train"]["seconds_per_image"]
    gflops = _gflops()
    per_size_cost = {}
    for level in sorted(IMAGE_SIZES):
        if level in models:
            m = models[level]
            entry = {
                "source": "measured",
                "train": m["train"],
                "build_s": m["build_s"],
                "qat_wrap_s": m["qat_wrap_s"],
                "convert_s": m["convert"]["seconds"],
                "detect_ms": m["detect_ms"],
            }
        elif gflops.get(level) and all(gflops.get(k) for k in models):

            def law(get, level=level):
                points = {gflops[k]: get(m) for k, m in models.items()}
                return sm.power_law_predict(points, gflops[level])

            exponent = sm.power_law(
                {gflops[k]: m["train"]["seconds_per_image"] for k, m in models.items()}
            )[1]
            entry = {
                "source": (
                    f"extrapolated: cost ~ GFLOPs^a through Lite{'+'.join(map(str, models))} "
                    f"(train a={exponent:.2f}; GFLOPs of model_size.json)"
                ),
                "train": {
                    "first_step_s": law(lambda m: m["train"]["first_step_s"]),
                    "seconds_per_image": law(lambda m: m["train"]["seconds_per_image"]),
                },
                "build_s": law(lambda m: m["build_s"]),
                "qat_wrap_s": law(lambda m: m["qat_wrap_s"]),
                "convert_s": law(lambda m: m["convert"]["seconds"]),
                "detect_ms": {v: law(lambda m, v=v: m["detect_ms"][v]) for v in lite0["detect_ms"]},
            }
        else:
            continue
        entry["qat_seconds_per_image"] = entry["train"]["seconds_per_image"] * qat_ratio
        per_size_cost[level] = entry
    record["ratios_lite0"] = {
        "qat_step_over_float_step": qat_ratio,
        "train_all_over_default_freeze": all_ratio,
        "note": "QAT per image at Lite k = float step at Lite k x this ratio (measured at Lite0)",
    }
    extrapolation = {}
    tables = {}
    for level, cost in per_size_cost.items():
        stages = build_stages(cost, ingest_fit, eval_fits, lite0, coco_extra, args.train_efficiency)
        result = sm.extrapolate(stages, WORKERS)
        for entry in result.values():
            rest = {k: v for k, v in entry["hours"].items() if not k.startswith("train")}
            entry["bottleneck_without_training"] = sm.bottleneck(rest)
        serial = sum(sm.stage_seconds(s, 1) for s in stages if not s.parallel)
        extrapolation[f"lite{level}"] = {
            "source": cost["source"],
            "stages": [s.__dict__ for s in stages],
            "by_workers": {str(w): r for w, r in result.items()},
            "float_training_meets_conversion_at_workers": sm.crossover_workers(stages[1], serial),
        }
        tables[level] = sm.markdown_table(
            f"Lite{level} ({cost['source'].split(' ')[0].rstrip(':')})", result, WORKERS
        )
    record["per_size_cost"] = {str(k): v for k, v in per_size_cost.items()}
    record["extrapolation"] = {
        "target": {"train_images": sm.COCO_TRAIN_IMAGES, "val_images": sm.COCO_VAL_IMAGES},
        "workers": list(WORKERS),
        "train_efficiency_assumed": args.train_efficiency,
        "by_size": extrapolation,
    }

    # --- report ---
    print()
    print(
        f"{'quick' if quick else 'full'} run, {info['cpu_count']} cores, load at start "
        f"{info['load_average_at_start'][0]:.1f}, end {info['load_average_at_end'][0]:.1f}; "
        f"{record['wall_seconds']:.0f} s measuring"
    )
    print(f"\nfits: seconds = start-up + per-image x N over N = {counts} (1 Beam worker)")
    print(f"{'stage':<26}{'start-up s':>11}{'ms/image':>10}{'rms resid s':>12}{'max rel':>9}")
    for name, fit in [("ingest", ingest_fit)] + [
        (f"evaluate Lite0 {v}", f) for v, f in eval_fits.items()
    ]:
        print(
            f"{name:<26}{fit.startup_s:>11.1f}{fit.per_item_s * 1000:>10.1f}"
            f"{fit.rms_residual_s:>12.2f}{fit.max_rel_residual:>9.1%}"
        )
    print(
        f"COCO-pixel ({coco_px}px) extra per image: ingest "
        f"{coco_extra['ingest_per_image_s'] * 1000:.1f} ms, evaluate "
        f"{coco_extra['eval_per_image_s'] * 1000:.1f} ms"
    )
    print(
        f"\n{'Lite':<6}{'px':>5}{'source':>14}{'train s/img':>12}{'QAT s/img':>10}"
        f"{'convert s':>10}  detect ms (f32/ptq/qat)"
    )
    for level, c in per_size_cost.items():
        detect = "/".join(f"{c['detect_ms'][v]:.0f}" for v in VARIANTS)
        print(
            f"Lite{level:<2}{IMAGE_SIZES[level]:>5}{c['source'].split(' ')[0].rstrip(':'):>14}"
            f"{c['train']['seconds_per_image']:>12.3f}{c['qat_seconds_per_image']:>10.3f}"
            f"{c['convert_s']:>10.0f}  {detect}"
        )
    print(
        f"Lite0 QAT step / float step: x{qat_ratio:.2f}; "
        f"whole model / default freeze: x{all_ratio:.2f}"
    )
    print(
        f"\nCOCO 2017 ({sm.COCO_TRAIN_IMAGES:,} train / {sm.COCO_VAL_IMAGES:,} val), hours; "
        f"training scaling efficiency ASSUMED {args.train_efficiency:.0%} (not measured)"
    )
    for level, lines in tables.items():
        print()
        print("\n".join(lines))
        entry = extrapolation[f"lite{level}"]
        rest = [entry["by_workers"][str(w)]["bottleneck_without_training"] for w in WORKERS]
        cross = entry["float_training_meets_conversion_at_workers"]
        print(
            f"without training: bottleneck {' / '.join(rest)} at {'/'.join(map(str, WORKERS))} "
            f"workers; float training falls to the conversion's time at "
            f"{'n/a' if cross is None else f'{cross:,.0f}'} workers"
        )

    record["tables_markdown"] = {f"lite{k}": v for k, v in tables.items()}
    _write(record, args.output)
    print(f"\nwrote {args.output}")


def main() -> int:
    args = parse_args()
    if args.from_json:
        record = json.loads(pathlib.Path(args.from_json).read_text(encoding="utf-8"))
    else:
        record = measure(args)
    analyse(record, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
