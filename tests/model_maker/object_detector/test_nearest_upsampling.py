import numpy as np
import tensorflow as tf
import tf_keras as keras

from model_maker.object_detector.nearest_upsampling import NearestUpsampling


def test_doubles_every_pixel():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3, 1)
    got = NearestUpsampling()(x).numpy()[0, :, :, 0]
    expected = [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    np.testing.assert_array_equal(got, expected)


def test_odd_targets_match_legacy_nearest_resize():
    x = tf.random.normal([2, 3, 3, 4], seed=1)
    got = NearestUpsampling(target_size=(5, 5))(x)
    assert got.shape == (2, 5, 5, 4)
    expected = tf.compat.v1.image.resize_nearest_neighbor(x, [5, 5])
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    x = tf.random.normal([1, 4, 4, 2], seed=2)
    expected = tf.compat.v1.image.resize_nearest_neighbor(x, [7, 7])
    np.testing.assert_array_equal(NearestUpsampling((7, 7))(x).numpy(), expected.numpy())


def test_gradient_compiles_with_xla():
    layer = NearestUpsampling(target_size=(5, 5))
    x = tf.random.normal([1, 3, 3, 2], seed=3)
    weights = tf.random.normal([1, 5, 5, 2], seed=4)

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * weights)
        return tape.gradient(loss, x)

    # d/dx of the sum: every input pixel collects the weights of its copies.
    w = weights.numpy()[0]
    expected = np.zeros([3, 3, 2], np.float32)
    for i in range(5):
        for j in range(5):
            expected[i // 2, j // 2] += w[i, j]
    np.testing.assert_allclose(grad(x).numpy()[0], expected, rtol=1e-5, atol=1e-5)


def test_serialises_in_a_model(tmp_path):
    inputs = keras.Input((3, 3, 2))
    model = keras.Model(inputs, NearestUpsampling((5, 6), name="up")(inputs))
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("up").get_config()["target_size"] == (5, 6)
    x = np.random.default_rng(0).normal(size=(1, 3, 3, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
