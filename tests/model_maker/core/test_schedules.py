import numpy as np
import pytest
import tf_keras as keras

from model_maker.core.schedules import WarmUp, cosine_with_warmup


def _schedule() -> WarmUp:
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    return WarmUp(0.1, decay, warmup_steps=100, name="warm")


def test_values_during_and_after_warmup():
    lr = _schedule()
    assert float(lr(0)) == 0.0
    assert float(lr(50)) == pytest.approx(0.05)
    assert float(lr(100)) == pytest.approx(0.1)  # decay(0)
    assert float(lr(110)) == pytest.approx(0.05)  # decay(10): one halving
    assert float(lr(120)) == pytest.approx(0.025)


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


def test_cosine_with_warmup_values():
    lr = cosine_with_warmup(0.08, total_steps=1100, warmup_steps=100)
    assert float(lr(50)) == pytest.approx(0.04)
    assert float(lr(100)) == pytest.approx(0.08)
    assert float(lr(600)) == pytest.approx(0.04, rel=1e-5)  # half-way through the cosine
    assert float(lr(1100)) == pytest.approx(0.0, abs=1e-7)
    assert float(lr(5000)) == pytest.approx(0.0, abs=1e-7)


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
