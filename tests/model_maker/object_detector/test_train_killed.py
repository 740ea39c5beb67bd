"""A float training process killed (SIGKILL) after its first epoch resumes from the checkpoint.

A checkpoint counts once the manager's ``checkpoint`` state file names it
(:mod:`tests.checkpoint_state`), so the test waits for the state file and reads
the epoch to resume from it, never from the ``ckpt-N.index`` files alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.checkpoint_state import checkpoint_number, finished_checkpoints

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import model_maker  # noqa: F401  (Keras 2 before TensorFlow)
    from model_maker.object_detector.dataloader import DataLoader
    from model_maker.object_detector.efficientdet_spec import EfficientDetLite0Spec

    logging.basicConfig(level=logging.INFO)
    examples, model_dir, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hparams = {"num_classes": 2, "label_map": {1: "square", 2: "bar"}, "image_size": 128,
               "fpn_num_filters": 16, "fpn_cell_repeats": 1, "box_class_repeats": 1,
               "depth_coefficient": 0.1}
    spec = EfficientDetLite0Spec(hparams=hparams, model_dir=model_dir, epochs=epochs,
                                 batch_size=2, var_freeze_expr="", tf_random_seed=7)
    train = DataLoader.from_examples(examples, "train")
    model = spec.create_model()
    spec.train(model, train.gen_dataset(spec, is_training=True), 3, None, None)
    print(json.dumps({"epochs": spec.history.epoch}))
    """
)


def _start(examples, model_dir, epochs):
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(examples), str(model_dir), str(epochs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_killed_training_resumes_from_its_last_epoch_checkpoint(tiny_examples, tmp_path):
    model_dir = tmp_path / "model"
    first = _start(tiny_examples, model_dir, 20)
    deadline = time.monotonic() + 600
    try:
        while not finished_checkpoints(model_dir):
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 10 minutes"
            time.sleep(0.1)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    # The state file is replaced atomically: after the kill it names the last whole checkpoint.
    last = checkpoint_number(finished_checkpoints(model_dir)[-1])
    assert not (model_dir / "ckpt-20.index").exists(), "training ended before the kill"
    # The rerun asks for 20 epochs again and trains only those after the checkpoint.
    second = _start(tiny_examples, model_dir, 20)
    out, err = second.communicate(timeout=1200)
    assert second.returncode == 0, err[-3000:]
    assert f"(epoch {last})" in err  # "resumed from .../ckpt-N (epoch N)"
    import json

    epochs = json.loads(out.strip().splitlines()[-1])["epochs"]
    assert epochs == list(range(last, 20))
    assert (model_dir / "ckpt-20.index").exists()
