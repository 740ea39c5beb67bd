"""Training throughput (images/s) of EfficientDet-Lite0 at 320x320, batch 8, on this machine.

Two measurements of the Trainer's step (``DetectorTrainer.train_step``: forward,
focal + Huber loss, L2, gradients, SGD with clipping):

* ``random``: random images with anchor targets of random boxes, held in memory
  (the conditions of the reference bar in shared/NOTES-MODEL.md: automl's Keras
  Lite0, 2 classes, plain GradientTape step, 12.6-13.6 images/s at batch 8);
* ``plain_tape``: the same model and loss in a plain ``tf.GradientTape`` step
  (the bar's method), measured in the same process and load, so the
  ``random`` / ``plain_tape`` ratio isolates the Trainer's own overhead from
  the machine's load;
* ``pipeline``: the full tf.data input pipeline (JPEG decode, flip, scale
  jitter, target assignment) over a generated Examples folder.

Both train the whole model (``var_freeze_expr=''``) so the work matches the
bar; ``frozen`` adds the Model Maker default (backbone and BiFPN frozen).
Each run does ``--warmup`` steps (compilation) and then times ``--steps``.
Prints a table; writes bench/results/train_throughput.json.

Run: .venv/bin/python bench/bench_train_throughput.py [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
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

BAR_LOW, BAR_HIGH = 12.6, 13.6  # automl Keras Lite0, 320, batch 8, random data (NOTES-MODEL.md)
BATCH = 8


def make_step_timer():
    """Keras callback recording the wall time of each training batch."""
    import tf_keras as keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self._start = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return StepTimer()


def _random_dataset(spec, seed: int = 0):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    size = spec.image_size
    images = rng.uniform(0, 255, (BATCH, size, size, 3)).astype("float32")
    labels = []
    for _ in range(BATCH):
        y0, x0 = rng.uniform(0, size * 0.6, 2)
        h, w = rng.uniform(size * 0.1, size * 0.4, 2)
        boxes = tf.constant([[y0, x0, y0 + h, x0 + w]], tf.float32)
        labels.append(spec.label_encoder(boxes, tf.constant([int(rng.integers(0, 2))])))
    stacked = {k: tf.stack([item[k] for item in labels]) for k in labels[0]}
    return tf.data.Dataset.from_tensors((tf.constant(images), stacked)).repeat()


def _plain_tape(spec, model, optimizer, dataset, steps: int, warmup: int) -> dict:
    """The bar's method: a plain ``tf.GradientTape`` step (no Keras fit, no L2, no freezing)."""
    import tensorflow as tf

    loss_fn = spec._loss()

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            class_logits, box_encodings = model(images, training=True)
            loss = loss_fn(labels, class_logits, box_encodings)["det_loss"]
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    times = []
    start = time.perf_counter()
    for images, labels in dataset.take(warmup + steps):
        t0 = time.perf_counter()
        float(step(images, labels))
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    per_step = sum(times[warmup:]) / steps
    return {
        "kind": "plain_tape",
        "freeze": "",
        "steps_timed": steps,
        "seconds_per_step": per_step,
        "images_per_s": BATCH / per_step,
        "first_step_s": times[0],
        "total_s": total,
        "ratio_to_bar_low": BATCH / per_step / BAR_LOW,
        "ratio_to_bar_high": BATCH / per_step / BAR_HIGH,
    }


def run(kind: str, freeze: str, steps: int, warmup: int, examples_dir: str | None) -> dict:
    import tf_keras as keras

    from model_maker.object_detector import train_lib
    from model_maker.object_detector.efficientdet_spec import EfficientDetLite0Spec

    keras.backend.clear_session()
    spec = EfficientDetLite0Spec(
        hparams={"num_classes": 2}, batch_size=BATCH, var_freeze_expr=freeze, verbose=0
    )
    model = spec.create_model()
    if kind in ("random", "plain_tape"):
        dataset = _random_dataset(spec)
    else:
        from model_maker.object_detector.dataloader import split_files

        dataset = spec.make_dataset(split_files(examples_dir, "train"), BATCH, is_training=True)
    optimizer = train_lib.build_optimizer(0.01)
    optimizer.build(model.trainable_variables)
    if kind == "plain_tape":
        return _plain_tape(spec, model, optimizer, dataset, steps, warmup)
    trainer = train_lib.DetectorTrainer(model, spec._loss(), var_freeze_expr=freeze)
    trainer.compile(optimizer=optimizer)
    timer = make_step_timer()
    start = time.perf_counter()
    trainer.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, callbacks=[timer], verbose=0)
    total = time.perf_counter() - start
    timed = timer.times[warmup:]
    per_step = sum(timed) / len(timed)
    return {
        "kind": kind,
        "freeze": freeze,
        "steps_timed": len(timed),
        "seconds_per_step": per_step,
        "images_per_s": BATCH / per_step,
        "first_step_s": timer.times[0],
        "total_s": total,
        "ratio_to_bar_low": BATCH / per_step / BAR_LOW,
        "ratio_to_bar_high": BATCH / per_step / BAR_HIGH,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-frozen", action="store_true")
    args = parser.parse_args()

    import model_maker  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow

    sys.path.insert(0, str(REPO))
    from tests.model_maker.object_detector.tiny_examples import write_tiny_examples

    info = machine_info("tensorflow", "tf-keras")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        examples = write_tiny_examples(
            pathlib.Path(tmp) / "examples", splits=(("train", 48),), seed=1
        )
        configs = [("plain_tape", ""), ("random", ""), ("pipeline", "")]
        if not args.skip_frozen:
            configs.append(("random", "(efficientnet|fpn_cells|resample_p6)"))
        for kind, freeze in configs:
            results.append(run(kind, freeze, args.steps, args.warmup, str(examples)))
            r = results[-1]
            print(f"  done {kind} freeze={freeze or '-'}: {r['images_per_s']:.2f} images/s")

    print()
    print(f"EfficientDet-Lite0 320x320, batch {BATCH}, bar {BAR_LOW}-{BAR_HIGH} images/s")
    print(f"{'data':<12}{'frozen':<40}{'s/step':>8}{'images/s':>10}{'ratio':>14}")
    for r in results:
        ratio = f"{r['ratio_to_bar_high']:.2f}-{r['ratio_to_bar_low']:.2f}"
        print(
            f"{r['kind']:<12}{r['freeze'] or '(none)':<40}{r['seconds_per_step']:>8.3f}"
            f"{r['images_per_s']:>10.2f}{ratio:>14}"
        )
    out = REPO / "bench" / "results" / "train_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    info["load_average_at_end"] = os.getloadavg()
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "batch_size": BATCH,
                "image_size": 320,
                "bar_images_per_s": [BAR_LOW, BAR_HIGH],
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
