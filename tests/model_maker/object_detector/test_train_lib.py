"""The training machinery on a tiny stand-in detector (two Dense heads), so it runs in seconds."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model_maker.object_detector import train_lib


def _tiny_detector() -> keras.Model:
    images = keras.Input((4, 4, 3), name="images")
    x = keras.layers.Flatten(name="efficientnet_flatten")(images)
    x = keras.layers.Dense(8, name="efficientnet_dense")(x)
    cls = keras.layers.Dense(6, name="class_net")(x)
    box = keras.layers.Dense(12, name="box_net")(x)
    cls = keras.layers.Reshape((3, 2), name="class_logits")(cls)
    box = keras.layers.Reshape((3, 4), name="box_encodings")(box)
    return keras.Model(images, [cls, box])


def _loss(labels, class_logits, box_encodings):
    cls = tf.reduce_mean(tf.square(class_logits - labels["cls"]))
    box = tf.reduce_mean(tf.square(box_encodings - labels["box"]))
    return {"det_loss": cls + box, "cls_loss": cls, "box_loss": box}


def _data(n=8, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, 4, 4, 3)).astype("float32")
    labels = {
        "cls": rng.uniform(-1, 1, (n, 3, 2)).astype("float32"),
        "box": rng.uniform(-1, 1, (n, 3, 4)).astype("float32"),
    }
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).repeat()


def _fit(model, optimizer, epochs, callbacks=(), initial_epoch=0, freeze="", weight_decay=0.0):
    trainer = train_lib.DetectorTrainer(model, _loss, weight_decay, freeze)
    optimizer.build(model.trainable_variables)
    trainer.compile(optimizer=optimizer)
    history = trainer.fit(
        _data(),
        epochs=epochs,
        steps_per_epoch=2,
        initial_epoch=initial_epoch,
        callbacks=list(callbacks),
        verbose=0,
    )
    return trainer, history


def test_freezing_by_regex_keeps_matching_variables():
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    before = {v.name: v.numpy().copy() for v in model.trainable_variables}
    trainer, _ = _fit(model, train_lib.build_optimizer(0.1), 1, freeze="efficientnet")
    assert {v.name for v in trainer.train_variables()} == {
        "class_net/kernel:0",
        "class_net/bias:0",
        "box_net/kernel:0",
        "box_net/bias:0",
    }
    for v in model.trainable_variables:
        changed = not np.allclose(v.numpy(), before[v.name])
        assert changed == (not v.name.startswith("efficientnet")), v.name


def test_loss_decreases_and_l2_is_reported():
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    trainer, history = _fit(
        model, train_lib.build_optimizer(0.05, clip_gradients_norm=10.0), 5, weight_decay=1e-3
    )
    det = history.history["det_loss"]
    assert det[-1] < 0.7 * det[0]
    kernels = [v for v in model.trainable_variables if v.name.endswith("kernel:0")]
    expected_l2 = 1e-3 * sum(float(tf.nn.l2_loss(v)) for v in kernels)
    assert trainer._reg_l2_loss(model.trainable_variables).numpy() == pytest.approx(
        expected_l2, rel=1e-5
    )


def test_ema_weights_end_up_in_the_model_and_apply_ema_restores():
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    optimizer = train_lib.build_optimizer(0.1, moving_average_decay=0.5)
    trainer, _ = _fit(model, optimizer, 1, freeze="efficientnet")

    # fit() wrote the averages into the model
    def average(v):
        return optimizer._model_variables_moving_average[
            optimizer._index_dict[optimizer._var_key(v)]
        ].numpy()

    for v in model.trainable_variables:
        np.testing.assert_allclose(v.numpy(), average(v))
    # ApplyEMA swaps in the averages and puts the raw weights back
    head = model.get_layer("class_net").kernel
    head.assign(head + 1.0)
    raw = head.numpy()
    with train_lib.ApplyEMA(optimizer, model.trainable_variables):
        np.testing.assert_allclose(head.numpy(), average(head))
    np.testing.assert_allclose(head.numpy(), raw)


def test_learning_rate_schedule_warms_up_linearly_then_cosine():
    schedule = train_lib.learning_rate_schedule(0.08, 0.008, warmup_steps=10, total_steps=110)
    values = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    assert values == pytest.approx([0.008, 0.044, 0.08, 0.04, 0.0], abs=1e-6)


def test_checkpoint_resume_and_scalar_logs(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    optimizer = train_lib.build_optimizer(train_lib.learning_rate_schedule(0.1, 0.01, 2, 8))
    state = train_lib.CheckpointState(str(tmp_path), model, optimizer)
    optimizer.build(model.trainable_variables)
    assert state.restore() == 0
    logger = train_lib.ScalarLogger(str(tmp_path / "logs"))
    callbacks = [train_lib.LearningRateLogger(), train_lib.EpochCheckpoint(state), logger]
    _fit(model, optimizer, 2, callbacks)
    weights = [v.numpy() for v in model.weights]

    # a new process: fresh model and optimizer, restored from the directory
    model2 = _tiny_detector()
    optimizer2 = train_lib.build_optimizer(train_lib.learning_rate_schedule(0.1, 0.01, 2, 8))
    optimizer2.build(model2.trainable_variables)
    state2 = train_lib.CheckpointState(str(tmp_path), model2, optimizer2)
    assert state2.restore() == 2
    assert int(optimizer2.iterations.numpy()) == 4
    for a, b in zip(weights, model2.weights, strict=True):
        np.testing.assert_allclose(a, b.numpy())
    _, history = _fit(model2, optimizer2, 3, [train_lib.EpochCheckpoint(state2)], initial_epoch=2)
    assert history.epoch == [2]
    assert int(optimizer2.iterations.numpy()) == 6
    assert state2.manager.latest_checkpoint.endswith("ckpt-3")

    tags = {}
    for path in sorted((tmp_path / "logs" / "train").glob("events.out.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor)))
                )
                assert value.metadata.plugin_data.plugin_name == "scalars"
    assert [step for step, _ in tags["epoch_loss"]] == [1, 2]
    lr = dict(tags["epoch_learning_rate"])
    # the rate of each epoch's last step: step 1 (mid warm-up), step 3 (1/6 into the cosine)
    assert lr[1] == pytest.approx(0.055)
    assert lr[2] == pytest.approx(0.05 * (1 + np.cos(np.pi / 6)), rel=1e-5)


def test_coco_eval_callback_logs_validation_metrics():
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    calls = []

    def evaluate():
        calls.append(1)
        return {"AP": 0.5, "AP50": 0.75, "AP75": 0.25, "ARmax100": 0.6}

    callback = train_lib.CocoEvalCallback(evaluate, every=2, total_epochs=3)
    _, history = _fit(model, train_lib.build_optimizer(0.01), 3, [callback])
    assert len(calls) == 2  # epochs 2 and 3 (the last)
    assert [epoch for epoch, _ in callback.history] == [2, 3]
    assert history.history["val_AP"] == [0.5, 0.5]


def test_steps_per_execution_eager_debug_and_profiler(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_detector()
    optimizer = train_lib.build_optimizer(0.05)
    optimizer.build(model.trainable_variables)
    trainer = train_lib.DetectorTrainer(model, _loss)
    trainer.compile(optimizer=optimizer, steps_per_execution=2)
    trainer.fit(
        _data(),
        epochs=1,
        steps_per_epoch=4,
        callbacks=[train_lib.Profiler(str(tmp_path), start=1, stop=2)],
        verbose=0,
    )
    assert int(optimizer.iterations.numpy()) == 4
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))
    # debug: the same step runs eagerly
    eager = train_lib.DetectorTrainer(model, _loss)
    eager.compile(optimizer=train_lib.build_optimizer(0.05), run_eagerly=True)
    eager.optimizer.build(model.trainable_variables)
    history = eager.fit(_data(), epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
