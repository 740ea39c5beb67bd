"""One worker process of the multi-worker tests: ``python -m tests.model_maker.multi_worker_job``.

Run with ``TF_CONFIG`` set (or not, for the one-process reference) and one JSON
argument:

* ``{"mode": "spec", "examples": ..., "model_dir": ..., "epochs": N,
  "batch_size": B, "strategy": ...}``: a tiny EfficientDet-Lite0 trained through
  ``EfficientDetSpec.train`` on the same batch every step (evaluation input
  pipeline: no shuffling, no augmentation, so every process sees the same
  images in the same order), one step per epoch; ``strategy`` may also be
  ``two_cpu_replicas`` (one process, two replicas); prints
  ``{"loss": [...], "det_loss": [...], "epochs": [...]}`` (one entry per step).
* ``{"mode": "trainer", "examples": ..., "output_dir": ..., "run_dir": ...,
  "checkpoint_dir": ..., "epochs": N, "batch_size": B, "strategy": ...}``: the
  Trainer's call (``train_from_examples``); prints the eval metrics.
* ``{"mode": "classifier", ...}``: the same keys, the image classifier's Trainer
  call (a tiny MobileNetV2 at 32 px).
* ``{"mode": "qat", "examples": ..., "float_model": ..., "output_dir": ...,
  "run_dir": ..., "checkpoint_root": ..., "epochs": N, "batch_size": B,
  "strategy": ...}``: the QATTrainer's call (``qat_or_skip``) on a float Model
  the ``trainer`` or ``classifier`` mode wrote; ``two_cpu_replicas`` calls the
  task's ``qat_from_examples`` with that strategy instead. Prints the per-step
  losses, the metrics, and a hash of the final weights.

Tests only: not part of the library.
"""

from __future__ import annotations

import json
import logging
import sys

import model_maker  # noqa: F401 - Keras 2 before TensorFlow

#: Tiny EfficientDet-Lite0 (64 px): seconds per step on a CPU.
TINY_HPARAMS = {
    "image_size": 64,
    "fpn_num_filters": 16,
    "fpn_cell_repeats": 1,
    "box_class_repeats": 1,
    "depth_coefficient": 0.1,
}


def _two_cpu_replicas():
    """MirroredStrategy over two logical CPUs of this process: one process with the
    replica layout of two one-CPU workers (the exact reference of the loss test)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _spec_mode(args: dict) -> dict:
    from model_maker.core.strategy import make_strategy

    # before any op: multi-worker collectives are configured at start-up
    if args["strategy"] == "two_cpu_replicas":
        strategy = _two_cpu_replicas()
    else:
        strategy = make_strategy(args["strategy"])

    from model_maker.object_detector.dataloader import DataLoader
    from model_maker.object_detector.efficientdet_spec import EfficientDetLite0Spec

    spec = EfficientDetLite0Spec(
        hparams={**TINY_HPARAMS, "num_classes": 2, "label_map": {1: "square", 2: "bar"}},
        model_dir=args["model_dir"],
        epochs=args["epochs"],
        batch_size=args["batch_size"],
        var_freeze_expr="",
        tf_random_seed=7,
        strategy=strategy,
    )
    train = DataLoader.from_examples(args["examples"], "train")
    assert train.size == args["batch_size"], "one batch of the whole split"
    dataset = spec.make_dataset(list(train.files), is_training=False).repeat()
    model = spec.create_model()
    spec.train(model, dataset, 1, None, None)
    history = spec.history.history
    return {
        "loss": history.get("loss", []),
        "det_loss": history.get("det_loss", []),
        "epochs": spec.history.epoch,
    }


def _trainer_mode(args: dict) -> dict:
    from model_maker.core.options import ModelOptions, TrainOptions
    from model_maker.object_detector.options import TrainerOptions

    options = TrainerOptions(
        model=ModelOptions(name="efficientdet_lite0", image_size=64, hparams=TINY_HPARAMS),
        train=TrainOptions(
            epochs=args["epochs"],
            batch_size=args["batch_size"],
            learning_rate=0.02,
            var_freeze_expr="",
            seed=7,
            strategy=args["strategy"],
        ),
    )
    return _train(args, options)


def _classifier_mode(args: dict) -> dict:
    from model_maker.core.options import IMAGE_CLASSIFICATION, ModelOptions, TrainOptions
    from model_maker.image_classifier.options import ClassifierTrainerOptions

    options = ClassifierTrainerOptions(
        model=ModelOptions(task=IMAGE_CLASSIFICATION, name="mobilenet_v2", image_size=32),
        train=TrainOptions(
            epochs=args["epochs"],
            batch_size=args["batch_size"],
            learning_rate=0.01,
            warmup_epochs=0.0,
            var_freeze_expr="",
            seed=7,
            strategy=args["strategy"],
        ),
    )
    return _train(args, options)


def _train(args: dict, options) -> dict:
    """The Trainer's own call (the task switch of the components) in this worker."""
    from model_maker.tasks import train_from_examples

    return train_from_examples(
        args["examples"],
        args["output_dir"],
        args["run_dir"],
        options,
        checkpoint_dir=args.get("checkpoint_dir"),
    )


def _qat_mode(args: dict) -> dict:
    import hashlib

    import numpy as np

    from model_maker.core.qat_hparams import QATHParams

    two_replicas = args["strategy"] == "two_cpu_replicas"
    strategy = _two_cpu_replicas() if two_replicas else None  # before any op
    hparams = QATHParams(
        learning_rate=0.01,
        batch_size=args["batch_size"],
        epochs=args["epochs"],
        strategy="default" if two_replicas else args["strategy"],
    )
    kwargs = {
        "train_split": "train",
        "eval_split": "eval",
        "checkpoint_root": args.get("checkpoint_root"),
        "run_dir": args["run_dir"],
    }
    from model_maker.tasks import qat_from_examples, qat_or_skip

    if two_replicas:
        result = qat_from_examples(
            args["examples"],
            args["float_model"],
            args["output_dir"],
            hparams,
            strategy=strategy,
            **kwargs,
        )
    else:
        _, result = qat_or_skip(
            args["examples"], args["float_model"], args["output_dir"], hparams, **kwargs
        )
    weights = result.model.get_weights()
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes() for w in weights))
    return {
        "loss": result.history.get("loss", []),
        "steps": result.steps,
        "metrics": result.metrics,
        "weights_sha256": digest.hexdigest(),
    }


MODES = {
    "spec": _spec_mode,
    "trainer": _trainer_mode,
    "classifier": _classifier_mode,
    "qat": _qat_mode,
}


def main() -> None:
    args = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = MODES[args["mode"]](args)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
