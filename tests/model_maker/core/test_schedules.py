import numpy as np
import pytest
import tf_keras as keras

from model_maker.core.schedules import WarmUp, cosine_with_warmup


def _schedule() -> WarmUp:
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    return WarmUp(0.1, decay, warmup_steps=100, name="warm")


def _reference(step: int, initial: float, decay, warmup_steps: int) -> float:
    """MediaPipe Model Maker's ``WarmUp`` (core/utils/model_util.py), written out:
    ``initial * step / warmup_steps`` before the end of the warm-up, then
    ``decay_schedule_fn(step)``: the decay sees the global step, not the step
    since the warm-up ended."""
    if step < warmup_steps:
        return initial * step / warmup_steps
    return float(decay(step))


def test_values_during_and_after_warmup_follow_mediapipe():
    lr = _schedule()
    decay = lr.decay_schedule_fn
    assert float(lr(0)) == 0.0
    assert float(lr(50)) == pytest.approx(0.05)
    for step in (0, 50, 99, 100, 110, 120, 250):
        assert float(lr(step)) == pytest.approx(_reference(step, 0.1, decay, 100)), step
    # after the warm-up the decay runs on the global step: decay(100) = 0.1 * 0.5**10
    assert float(lr(100)) == pytest.approx(0.1 * 0.5**10)
    assert float(lr(110)) == pytest.approx(0.1 * 0.5**11)


def test_no_warmup_is_the_decay_schedule():
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    lr = WarmUp(0.1, decay, warmup_steps=0)
    assert float(lr(0)) == pytest.approx(0.1)
    assert float(lr(10)) == pytest.approx(0.05)


def test_config_round_trip():
    lr = _schedule()
    config = lr.get_config()
    assert config["decay_schedule_fn"]["class_name"] == "ExponentialDecay"
    again = WarmUp.from_config(config)
    assert again.get_config() == config
    for step in (0, 37, 100, 155):
        assert float(again(step)) == pytest.approx(float(lr(step)))
    # the generic Keras route finds the registered class
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(lr))
    assert isinstance(restored, WarmUp)
    assert float(restored(150)) == pytest.approx(float(lr(150)))


def test_plain_callable_decay_has_no_config():
    lr = WarmUp(0.1, lambda step: 0.1, warmup_steps=10)
    assert float(lr(5)) == pytest.approx(0.05)
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        lr.get_config()


def test_cosine_with_warmup_is_mediapipes_image_classifier_schedule():
    """WarmUp around CosineDecay(lr, total_steps): the cosine spans every step,
    warm-up included, as MediaPipe's image classifier builds it."""
    lr = cosine_with_warmup(0.08, total_steps=1100, warmup_steps=100)

    def cosine(step):
        return 0.08 * 0.5 * (1 + np.cos(np.pi * min(step, 1100) / 1100))

    assert float(lr(50)) == pytest.approx(0.04)
    for step in (100, 550, 600, 1099, 1100, 5000):
        assert float(lr(step)) == pytest.approx(cosine(step), rel=1e-5, abs=1e-7), step
    assert float(lr(550)) == pytest.approx(0.04, rel=1e-5)  # half-way through the cosine
    assert float(lr(1100)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("filename", ["model.keras", "saved_model"])
def test_compiled_model_saves_and_reloads(tmp_path, filename):
    # (legacy .h5 files need custom_objects={"WarmUp": WarmUp} to load)
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=_schedule(), momentum=0.9), loss="mse"
    )
    model.fit(np.ones([4, 3]), np.zeros([4, 2]), epochs=1, verbose=0)
    path = str(tmp_path / filename)
    model.save(path)
    loaded = keras.models.load_model(path)
    config = loaded.optimizer.get_config()["learning_rate"]
    assert config["registered_name"] == "qatflow>WarmUp"
    schedule = loaded.optimizer._learning_rate  # the schedule object itself
    assert isinstance(schedule, WarmUp)
    assert schedule.get_config() == _schedule().get_config()
    assert float(schedule(60)) == pytest.approx(0.06)
    np.testing.assert_allclose(
        loaded.predict(np.ones([1, 3]), verbose=0), model.predict(np.ones([1, 3]), verbose=0)
    )
