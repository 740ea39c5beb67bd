import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest
import tensorflow as tf

from model_maker.core.frozen_graph import frozen_function, save_frozen


class _Scaler(tf.Module):
    """Variables, a nested tf.function and a while loop (tf.map_fn), as a detector's serving."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4) / 10)
        self.bias = tf.Variable(np.array([0.5, -1.0, 2.0, 0.0], np.float32))

    @tf.function(autograph=False)
    def inner(self, x):
        return tf.matmul(x, self.kernel) + self.bias

    def serve(self, x):
        y = self.inner(x)
        top = tf.map_fn(lambda row: tf.reduce_max(row), y)  # a functional While
        return {"y": y, "top": top}


SIGNATURE = tf.TensorSpec([None, 3], tf.float32, name="x")


def _traced(module: _Scaler):
    return tf.function(module.serve, input_signature=[SIGNATURE], autograph=False)


def test_frozen_function_computes_the_same_without_variables(tmp_path):
    module = _Scaler()
    function = _traced(module).get_concrete_function()
    frozen = frozen_function(function, SIGNATURE)
    assert frozen.variables == () and frozen.captured_inputs == []
    x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    expected = function(x)
    got = frozen(x)
    assert set(got) == {"y", "top"}
    np.testing.assert_array_equal(got["y"].numpy(), expected["y"].numpy())
    np.testing.assert_array_equal(got["top"].numpy(), expected["top"].numpy())
    # the values were read at freezing: later changes to the variables do not leak in
    module.bias.assign_add([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(frozen(x)["y"].numpy(), expected["y"].numpy())


def test_save_frozen_writes_no_variables_and_loads(tmp_path):
    module = _Scaler()
    function = _traced(module).get_concrete_function()
    path = save_frozen(module.serve, SIGNATURE, str(tmp_path / "saved"))
    saved = [name for name, _ in tf.train.list_variables(f"{path}/variables/variables")]
    assert saved == ["_CHECKPOINTABLE_OBJECT_GRAPH"]
    serve = tf.saved_model.load(path).signatures["serving_default"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(serve(x=x)["y"].numpy(), function(tf.constant(x))["y"].numpy())
    assert serve.structured_input_signature[1]["x"].shape.as_list() == [None, 3]


def test_frozen_function_takes_one_input():
    module = _Scaler()
    two = tf.function(
        lambda a, b: module.inner(a + b),
        input_signature=[SIGNATURE, SIGNATURE],
        autograph=False,
    ).get_concrete_function()
    with pytest.raises(ValueError, match="one input"):
        frozen_function(two, SIGNATURE)
