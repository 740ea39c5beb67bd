"""``train.strategy``: the setting, building each strategy, its one-line errors, chief-only dirs.

The two-process behaviour (loss, chief-only artifacts, resume) is in
``tests/model_maker/test_multi_worker.py``.
"""

from __future__ import annotations

import json
import os
import pathlib
from types import SimpleNamespace

import pytest

from model_maker.core.errors import SettingsError, UsageError
from model_maker.core.options import STRATEGIES, TrainOptions


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_train_options_strategy_setting():
    assert TrainOptions().strategy == "default"
    assert STRATEGIES == ("default", "gpus", "tpu", "multi_worker")
    for name in STRATEGIES:
        assert TrainOptions(strategy=name).strategy == name
    with pytest.raises(
        SettingsError, match=r"^strategy: 'multiworker' is not allowed.*multi_worker"
    ):
        TrainOptions(strategy="multiworker")


def test_pipeline_config_carries_the_strategy():
    from pipeline.config import load_config

    config = load_config(overrides=["train.strategy=multi_worker"])
    assert config.train.strategy == "multi_worker"
    with pytest.raises(SettingsError, match=r"^train\.strategy: 'tpus' is not allowed"):
        load_config(overrides=["train.strategy=tpus"])
    # the QATTrainer's own (it may run on other machines than the Trainer)
    config = load_config(overrides=["qat.strategy=multi_worker"])
    assert config.qat.strategy == "multi_worker" and config.train.strategy == "default"
    assert config.qat.hparams().strategy == "multi_worker"  # what the QATTrainer gets
    with pytest.raises(SettingsError, match=r"^qat\.strategy: 'gpu' is not allowed.*gpus"):
        load_config(overrides=["qat.strategy=gpu"])


def test_qat_checkpoints_do_not_depend_on_the_strategy(tmp_path):
    from model_maker.core.checkpoints import qat_checkpoint_dir
    from model_maker.core.qat_hparams import QATHParams

    def folder(**values):
        return qat_checkpoint_dir(str(tmp_path), "/models/float", QATHParams(**values))

    assert folder() == folder(strategy="multi_worker")  # a resumed job may change it
    assert folder() != folder(learning_rate=0.01)


def test_default_strategy_is_tensorflows_own():
    import tensorflow as tf

    from model_maker.core import strategy as lib

    for name in (None, "", "default"):
        strategy = lib.make_strategy(name)
        assert strategy is tf.distribute.get_strategy()
        assert lib.is_chief(strategy) and lib.num_workers(strategy) == 1
    ds = tf.data.Dataset.range(4)
    assert lib.shard_by_batch(ds, tf.distribute.get_strategy()) is ds  # one worker: untouched


def test_unknown_strategy():
    from model_maker.core.strategy import make_strategy

    with pytest.raises(UsageError) as exc:
        make_strategy("mirrored")
    assert "strategy 'mirrored' is not supported" in _one_line(exc)


def test_gpus_without_a_gpu_is_one_clear_line(monkeypatch):
    import tensorflow as tf

    from model_maker.core.strategy import make_strategy

    # a machine without GPUs, also where the test runs on one
    real = tf.config.list_physical_devices
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind=None: [] if kind == "GPU" else real(kind),
    )
    with pytest.raises(UsageError) as exc:
        make_strategy("gpus")
    assert _one_line(exc).startswith("strategy 'gpus': no GPU found")


def test_tpu_without_a_tpu_is_one_clear_line(monkeypatch):
    from model_maker.core.strategy import make_strategy

    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(UsageError) as exc:
        make_strategy("tpu")
    assert _one_line(exc).startswith("strategy 'tpu': no TPU found (")


@pytest.mark.parametrize(
    ("tf_config", "message"),
    [
        (None, "the TF_CONFIG environment variable is not set"),
        ("{not json", "TF_CONFIG is not JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG needs a 'cluster'"),
        (
            json.dumps(
                {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}
            ),
            "task 'worker' index 1 is not in its cluster",
        ),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, tf_config, message):
    from model_maker.core.strategy import make_strategy

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UsageError) as exc:
        make_strategy("multi_worker")
    assert _one_line(exc).startswith("strategy 'multi_worker': ")
    assert message in str(exc.value)


def test_global_batch_must_split_over_the_replicas():
    import tensorflow as tf

    from model_maker.core.strategy import check_global_batch

    assert check_global_batch(7, tf.distribute.get_strategy()) == 7
    two = SimpleNamespace(num_replicas_in_sync=2)  # only the replica count is read
    assert check_global_batch(8, two) == 4
    with pytest.raises(UsageError, match=r"batch_size 5 is the global batch .* 2 replicas"):
        check_global_batch(5, two)


def _non_chief() -> SimpleNamespace:
    """What :func:`worker_dirs` reads of a multi-worker strategy on worker 1."""
    return SimpleNamespace(
        extended=SimpleNamespace(should_checkpoint=False),
        cluster_resolver=SimpleNamespace(task_type="worker", task_id=1),
    )


def test_worker_dirs_chief_keeps_its_folders(tmp_path):
    import tensorflow as tf

    from model_maker.core.strategy import worker_dirs

    with worker_dirs(tf.distribute.get_strategy(), str(tmp_path / "a"), None) as dirs:
        assert dirs == (str(tmp_path / "a"), None)


def test_worker_dirs_non_chief_writes_to_a_removed_temp_folder(tmp_path, monkeypatch):
    import tempfile

    from model_maker.core.strategy import worker_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with worker_dirs(_non_chief(), str(real), None, str(real / "logs")) as dirs:
            out, none, logs = dirs
            assert none is None and out != logs
            for path in (out, logs):
                assert pathlib.Path(path).parent.name.startswith("qatflow-worker1-")
                assert str(tmp_path / "tmp") in path
                os.makedirs(path)
                pathlib.Path(path, "f").write_text("x")
            raise RuntimeError("boom")  # removed on the way out, error or not
    assert not list((tmp_path / "tmp").iterdir())
    assert not real.exists()


def test_restore_latest_reads_another_folder(tmp_path):
    import tensorflow as tf

    from model_maker.core.strategy import restore_latest

    saved = tf.Variable(3.0)
    tf.train.CheckpointManager(tf.train.Checkpoint(v=saved), str(tmp_path / "chief"), 2).save()
    target = tf.Variable(0.0)
    path = restore_latest(tf.train.Checkpoint(v=target), str(tmp_path / "chief"))
    assert path and path.endswith("ckpt-1") and float(target.numpy()) == 3.0
    assert restore_latest(tf.train.Checkpoint(v=target), str(tmp_path / "empty")) is None


def test_detector_spec_and_trainer_take_the_setting(tmp_path):
    import tensorflow as tf

    from model_maker.core.options import ModelOptions
    from model_maker.object_detector.efficientdet_spec import STRATEGIES as SPEC_STRATEGIES
    from model_maker.object_detector.efficientdet_spec import EfficientDetLite0Spec
    from model_maker.object_detector.options import TrainerOptions
    from model_maker.object_detector.trainer import build_spec

    assert SPEC_STRATEGIES == (None, *STRATEGIES)
    hparams = {"num_classes": 2}
    spec = EfficientDetLite0Spec(hparams=hparams, strategy="default", model_dir=str(tmp_path))
    assert spec.strategy is tf.distribute.get_strategy()
    given = tf.distribute.get_strategy()
    assert EfficientDetLite0Spec(hparams=hparams, strategy=given).strategy is given
    with pytest.raises(UsageError, match="strategy 'mirrored' is not supported"):
        EfficientDetLite0Spec(hparams=hparams, strategy="mirrored")
    options = TrainerOptions(model=ModelOptions(image_size=64), train=TrainOptions(strategy="tpu"))
    with pytest.raises(UsageError, match=r"^strategy 'tpu': no TPU found"):
        build_spec(options, {1: "a", 2: "b"}, str(tmp_path))


def test_undistributed_is_the_model_itself_on_one_device():
    import tensorflow as tf
    import tf_keras as keras

    from model_maker.core.strategy import undistributed

    def build():
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    model = build()
    default = tf.distribute.get_strategy()
    assert undistributed(model, default, build) is model
    other = SimpleNamespace()  # any other strategy: a plain copy with the same weights
    copy = undistributed(model, other, build)
    assert copy is not model
    for a, b in zip(copy.get_weights(), model.get_weights(), strict=True):
        assert (a == b).all()
