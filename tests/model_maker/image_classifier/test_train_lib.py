"""create_model, train, evaluate: frozen layers, regularizers, falling loss, exact metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.errors import UsageError
from model_maker.image_classifier.hparams import HParams


def _logits_model(num_classes: int):
    """A model whose output is its input: evaluate() sees exactly the logits we give."""
    import tf_keras as keras

    inputs = keras.Input((num_classes,))
    return keras.Model(inputs, keras.layers.Activation("linear", name="logits")(inputs))


def _dataset(logits, labels, batch_size):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        (np.asarray(logits, np.float32), np.asarray(labels, np.int32))
    ).batch(batch_size)


def test_evaluate_top1_top5_and_loss_on_a_hand_made_case():
    from model_maker.image_classifier.train_lib import evaluate

    logits = [
        [9, 1, 2, 3, 4, 5, 0],  # label 0: top-1 hit
        [9, 8, 7, 6, 5, 4, 3],  # label 4: 5th highest -> top-5 hit, top-1 miss
        [9, 8, 7, 6, 5, 4, 3],  # label 5: 6th highest -> miss both
        [0, 0, 1, 0, 0, 0, 2],  # label 2: 2nd -> top-5 hit
        [5, 0, 0, 0, 0, 0, 0],  # label 3: ties at 0 straddle the top 5 -> counts as in
    ]
    labels = [0, 4, 5, 2, 3]
    result = evaluate(_logits_model(7), _dataset(logits, labels, batch_size=2))
    assert result["num_images"] == 5
    assert result["top1"] == pytest.approx(1 / 5)
    assert result["top5"] == pytest.approx(4 / 5)
    x = np.asarray(logits, np.float64)
    log_softmax = x - x.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(5), labels])
    assert result["loss"] == pytest.approx(expected, rel=1e-5)


def test_evaluate_has_no_top5_below_five_classes():
    from model_maker.image_classifier.train_lib import evaluate

    result = evaluate(_logits_model(3), _dataset([[1, 2, 3], [3, 2, 1]], [2, 1], 4))
    assert set(result) == {"top1", "loss", "num_images"}
    assert result["top1"] == 0.5


def test_evaluate_rejects_an_empty_dataset():
    from model_maker.image_classifier.train_lib import evaluate

    with pytest.raises(UsageError, match="no images"):
        evaluate(_logits_model(3), _dataset(np.zeros((0, 3)), np.zeros((0,)), 4))


@pytest.fixture(scope="module")
def small_spec():
    from model_maker.image_classifier.image_classifier_spec import get_spec

    return get_spec("mobilenet_multi_avg", image_size=32)


def test_create_model_without_fine_tuning_trains_only_the_logits(small_spec):
    from model_maker.image_classifier.train_lib import create_model

    model = create_model(small_spec, 4, HParams(do_fine_tuning=False, l2_regularizer=0.01))
    trainable = {w.name.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"logits"}
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1280 * 4 + 4
    # L2 on the layers that train only: the logits kernel
    (loss,) = model.losses
    kernel = model.get_layer("logits").kernel.numpy()
    assert float(loss) == pytest.approx(0.01 * float(np.sum(kernel**2)), rel=1e-5)


def test_create_model_with_fine_tuning_regularizes_every_kernel(small_spec):
    import tf_keras as keras

    from model_maker.image_classifier.train_lib import create_model

    hp = HParams(do_fine_tuning=True, l1_regularizer=1e-5, l2_regularizer=1e-4, seed=3)
    model = create_model(small_spec, 4, hp)
    kernels = [
        layer
        for layer in model.layers
        if isinstance(
            layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.Dense
        )
    ]
    assert len(model.losses) == len(kernels) == 35 + 16 + 1
    assert model.get_layer("input_normalization").trainable  # a Rescaling has no weights
    # the seed fixes the initial weights, and adding the regularizers keeps them
    plain = create_model(
        small_spec, 4, dataclasses.replace(hp, l1_regularizer=0.0, l2_regularizer=0.0)
    )
    assert plain.losses == []
    for a, b in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_create_model_rejects_bad_class_counts(small_spec):
    from model_maker.image_classifier.train_lib import create_model

    for bad in (0, 2.5, True):
        with pytest.raises(UsageError, match="num_classes"):
            create_model(small_spec, bad)


def _toy_data(seed: int, count: int = 24, batch_size: int = 8):
    """Two classes a small net separates: dark images (0) and bright images (1)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    images = rng.uniform(0, 90, (count, 32, 32, 3)) + 150 * labels[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices(
        (images.astype(np.float32), labels.astype(np.int32))
    ).batch(batch_size)


def _tiny_builder(num_classes, image_size, *, dropout_rate, mean_rgb, stddev_rgb):
    """A tiny classifier without batch norm, so evaluation right after a few steps is fair."""
    import tf_keras as keras

    from model_maker.image_classifier.models.head import classification_head, normalized_input

    images, x = normalized_input(image_size, mean_rgb, stddev_rgb)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(x)
    x = keras.layers.ReLU(name="relu")(x)
    logits = classification_head(x, num_classes, dropout_rate)
    return keras.Model(images, logits, name="tiny")


def test_training_learns_the_toy_task():
    from model_maker.image_classifier.image_classifier_spec import ModelSpec
    from model_maker.image_classifier.train_lib import create_model, evaluate, train

    spec = ModelSpec("tiny", (32, 32), 127.5, 127.5, _tiny_builder)
    hp = HParams(
        learning_rate=0.1,
        batch_size=8,
        epochs=4,
        warmup_epochs=1.0,
        do_fine_tuning=True,
        label_smoothing=0.0,
        dropout_rate=0.0,
        seed=1,
    )
    model = create_model(spec, 2, hp)
    train_ds, val_ds = _toy_data(0), _toy_data(1)
    before = evaluate(model, val_ds)
    history = train(model, train_ds, val_ds, hp)
    after = evaluate(model, val_ds)
    losses = history.history["loss"]
    assert len(losses) == 4 and len(history.history["val_top1"]) == 4
    assert losses[-1] < 0.5 * losses[0], losses
    assert after["loss"] < 0.5 * before["loss"], (before, after)
    assert after["top1"] == 1.0, after
    assert history.history["val_top1"][-1] == after["top1"]
    # WarmUp to the peak over 1 epoch (3 steps), cosine to 0 after 4 epochs (12 steps)
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"].endswith("WarmUp")
    assert schedule["config"]["initial_learning_rate"] == 0.1
    assert schedule["config"]["warmup_steps"] == 3
    assert int(model.optimizer.iterations) == 12
    # the rate of the last step (11): the cosine spans all 12 steps (MediaPipe's WarmUp
    # hands the global step to the decay)
    last = 0.1 * 0.5 * (1 + math.cos(math.pi * 11 / 12))
    assert float(model.optimizer.learning_rate) == pytest.approx(last, rel=1e-5)


def test_training_without_fine_tuning_changes_only_the_logits(small_spec):
    from model_maker.image_classifier.train_lib import create_model, train

    hp = HParams(learning_rate=0.1, batch_size=8, epochs=1, warmup_epochs=0.0, seed=4)
    model = create_model(small_spec, 2, hp)
    before = {w.name: w.numpy().copy() for w in model.weights}
    train(model, _toy_data(0), None, hp)
    changed = {w.name.split("/")[0] for w in model.weights if not np.array_equal(w, before[w.name])}
    assert changed == {"logits"}  # batch-norm statistics of the frozen backbone included


@pytest.mark.slow  # about 20 s: traces the training step of a 150-layer model
def test_fine_tuning_the_whole_network_lowers_the_training_loss(small_spec):
    from model_maker.image_classifier.train_lib import create_model, train

    hp = HParams(
        learning_rate=0.05,
        batch_size=8,
        epochs=3,
        warmup_epochs=0.0,
        do_fine_tuning=True,
        label_smoothing=0.0,
        dropout_rate=0.0,
        l2_regularizer=0.0,
        seed=2,
    )
    model = create_model(small_spec, 2, hp)
    stem = model.get_layer("mobilenet_multi_avg_stem_conv").kernel.numpy().copy()
    losses = train(model, _toy_data(0), None, hp).history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert not np.allclose(model.get_layer("mobilenet_multi_avg_stem_conv").kernel.numpy(), stem)


def test_train_needs_a_known_length():
    from model_maker.image_classifier.image_classifier_spec import ModelSpec
    from model_maker.image_classifier.train_lib import create_model, train

    model = create_model(ModelSpec("tiny", (32, 32), 127.5, 127.5, _tiny_builder), 2)
    with pytest.raises(UsageError, match="steps_per_epoch"):
        train(model, _toy_data(0).repeat(), None, HParams(epochs=1))
