"""classification_metrics on a hand-made case; evaluate_tflite through LiteRT on images
prepared as the dataloader's evaluation pipeline prepares them."""

from __future__ import annotations

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.errors import UsageError
from model_maker.image_classifier.evaluate import classification_metrics, quantize_input

# --- classification_metrics ------------------------------------------------------------

SCORES = [
    [9, 1, 2, 3, 4, 5],  # label 0: top-1 hit
    [9, 8, 7, 6, 5, 4],  # label 4: 5th -> top-5 hit
    [9, 8, 7, 6, 5, 4],  # label 5: 6th -> miss
    [0, 0, 1, 0, 0, 2],  # label 2: 2nd -> top-5 hit, predicted 5
    [5, 0, 0, 0, 0, 0],  # label 5: tied at 0 with 1..4, which rank first -> 6th -> miss
    [0, 3, 0, 0, 0, 0],  # label 1: top-1 hit
    [2, 2, 0, 0, 0, 0],  # label 1: tied first with 0, which wins argmax -> top-1 miss, 2nd
]
TRUE = [0, 4, 5, 2, 5, 1, 1]


def test_classification_metrics_on_a_hand_made_case():
    result = classification_metrics(TRUE, SCORES, num_classes=6, k=5)
    assert result["num_images"] == 7
    assert result["top1"] == pytest.approx(2 / 7)
    assert result["top5"] == pytest.approx(5 / 7)
    assert result["confusion_matrix"] == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 0],
    ]
    assert result["per_class_accuracy"] == [1.0, 0.5, 0.0, None, 0.0, 0.0]
    assert result["per_class_count"] == [1, 2, 1, 0, 1, 2]
    # class 0: precision 1/5, recall 1 -> 1/3; class 1: precision 1, recall 1/2 -> 2/3
    assert result["per_class_f1"] == pytest.approx([1 / 3, 2 / 3, 0, 0, 0, 0])
    # class 3 has neither images nor predictions: the mean runs over the other 5
    assert result["macro_f1"] == pytest.approx(1 / 5)


def test_classification_metrics_reports_top_k_only_with_k_classes():
    result = classification_metrics([2, 1], [[1, 2, 3], [3, 2, 1]], num_classes=3)
    assert "top5" not in result and result["top1"] == 0.5
    assert classification_metrics([2, 1], [[1, 2, 3], [3, 2, 1]], 3, k=2)["top2"] == 1.0
    perfect = classification_metrics([0, 1, 2], np.eye(3), 3)
    assert perfect["macro_f1"] == 1.0 and perfect["per_class_accuracy"] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("true", "scores", "match"),
    [
        ([], np.zeros((0, 3)), "no images"),
        ([0, 1], [[1, 2, 3]], r"\[2, 3\]"),
        ([0, 3], [[1, 2, 3], [1, 2, 3]], "0..2"),
        ([0, -1], [[1, 2, 3], [1, 2, 3]], "0..2"),
        ([0.5], [[1, 2, 3]], "integer"),
    ],
)
def test_classification_metrics_rejects_bad_input(true, scores, match):
    with pytest.raises(UsageError, match=match):
        classification_metrics(true, scores, num_classes=3)


def test_keras_logits_give_the_top1_of_train_lib_evaluate():
    import tensorflow as tf
    import tf_keras as keras

    from model_maker.image_classifier.train_lib import evaluate

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 40).astype(np.int32)
    inputs = keras.Input((7,))
    model = keras.Model(inputs, keras.layers.Activation("linear", name="logits")(inputs))
    keras_result = evaluate(model, tf.data.Dataset.from_tensor_slices((logits, labels)).batch(8))
    ours = classification_metrics(labels, logits, 7)
    assert ours["top1"] == keras_result["top1"]
    assert ours["top5"] == keras_result["top5"]  # no ties in random logits


def test_quantize_input_rounds_to_the_input_steps():
    pixels = np.array([0.0, 0.4, 0.6, 127.5, 254.6, 255.0], np.float32)
    np.testing.assert_array_equal(quantize_input(pixels, "uint8", 1.0, 0), [0, 0, 1, 128, 255, 255])
    as_int8 = quantize_input(pixels, "int8", 1.0, -128)
    np.testing.assert_array_equal(as_int8, [-128, -128, -127, 0, 127, 127])
    assert quantize_input(pixels, "float32", 0.0, 0).dtype == np.float32


# --- evaluate_tflite ---------------------------------------------------------------------

SIZE = 32
NUM_CLASSES = 3  # red, green, blue of the conftest's colour Examples (label-map ids 2, 3, 7)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    """A float32 classifier file of a fixed (untrained, seeded) tiny network, and the model."""
    import tf_keras as keras

    from model_maker.image_classifier.export import export_tflite
    from model_maker.image_classifier.models.head import classification_head, normalized_input

    keras.utils.set_random_seed(5)
    images, x = normalized_input(SIZE, 127.5, 127.5)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    model = keras.Model(images, classification_head(x, NUM_CLASSES, 0.0), name="tiny")
    path = tmp_path_factory.mktemp("eval_tflite") / "float32.tflite"
    export_tflite(model, str(path), labels=["red", "green", "blue"], metadata=None)
    return model, str(path)


def test_evaluate_tflite_on_the_dataloader_eval_batches_equals_keras(colour_model, colour_examples):
    import tensorflow as tf

    from model_maker.image_classifier.dataloader import DataLoader, InputOptions
    from model_maker.image_classifier.evaluate import evaluate_tflite

    model, path = colour_model
    data = DataLoader.from_examples(str(colour_examples), "eval")
    dataset = data.gen_tf_dataset(InputOptions(image_size=SIZE, batch_size=4), is_training=False)
    result = evaluate_tflite(path, dataset, num_classes=NUM_CLASSES)
    images = np.concatenate([b[0].numpy() for b in dataset])
    labels = np.concatenate([b[1].numpy() for b in dataset])
    keras_scores = tf.nn.softmax(model.predict(images, verbose=0)).numpy()
    expected = classification_metrics(labels, keras_scores, NUM_CLASSES)
    assert result["input_dtype"] == "float32"
    assert {k: v for k, v in result.items() if k != "input_dtype"} == expected
    assert result["num_images"] == 6 and sum(result["per_class_count"]) == 6


def test_evaluate_tflite_resizes_other_sizes_as_the_eval_pipeline(colour_model):
    from model_maker.image_classifier.dataloader import _resize
    from model_maker.image_classifier.evaluate import evaluate_tflite, predict_tflite

    _, path = colour_model
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 255, (2, 48, 80, 3)).astype(np.float32)
    resized = np.stack([_resize(image, SIZE).numpy() for image in raw])
    np.testing.assert_allclose(predict_tflite(path, raw), predict_tflite(path, resized), atol=1e-6)
    pairs = [(raw[0], 1), (raw[1], 2)]
    from_pairs = evaluate_tflite(open(path, "rb").read(), pairs, num_classes=NUM_CLASSES)
    from_arrays = evaluate_tflite(path, (resized, np.array([1, 2])), num_classes=NUM_CLASSES)
    assert from_pairs == from_arrays


def test_evaluate_tflite_checks_the_class_count_and_the_data(colour_model):
    from model_maker.image_classifier.evaluate import evaluate_tflite

    _, path = colour_model
    images = np.zeros((2, SIZE, SIZE, 3), np.float32)
    with pytest.raises(UsageError, match="3 classes, expected 4"):
        evaluate_tflite(path, (images, [0, 1]), num_classes=4)
    with pytest.raises(UsageError, match="2 images but 3 labels"):
        evaluate_tflite(path, (images, [0, 1, 2]), num_classes=NUM_CLASSES)
    with pytest.raises(UsageError, match="no images"):
        evaluate_tflite(path, [], num_classes=NUM_CLASSES)
