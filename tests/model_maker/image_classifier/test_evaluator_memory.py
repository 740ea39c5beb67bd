"""Issue 21: a classifier scored on an image folder holds one decoded image at a time."""

from __future__ import annotations

import weakref

import numpy as np

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)


def _colour_tflite() -> bytes:
    """Float TFLite of a mean-colour classifier: red -> 0, green -> never, blue -> 2."""
    import tensorflow as tf
    import tf_keras as keras

    from model_maker.image_classifier.models.head import classification_head, normalized_input

    images, x = normalized_input(32, 127.5, 127.5)
    model = keras.Model(images, classification_head(x, 3, 0.0), name="colour")
    kernel = np.array([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    model.get_layer("logits").set_weights([kernel, np.array([0.0, -5.0, 0.0], np.float32)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_image_folder_evaluation_holds_one_decoded_image_at_a_time(tmp_path, monkeypatch):
    # The decoded images of the whole folder were gathered in a list before the first
    # one was scored; now each is scored before the next is decoded.
    from PIL import Image

    from model_maker.image_classifier import evaluator

    root = tmp_path / "images"
    for name, colour in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
        (root / name).mkdir(parents=True)
        for k in range(6):
            Image.new("RGB", (32 + 8 * k, 32), colour).save(root / name / f"{k}.png")
    (root / "red" / "broken.png").write_bytes(b"not a png")
    model = tmp_path / "colour.tflite"
    model.write_bytes(_colour_tflite())

    decoded: list[weakref.ref] = []
    alive_at_most = [0]
    real = evaluator.decode_image

    def counting(encoded):
        image = real(encoded)
        decoded.append(weakref.ref(image))
        alive_at_most[0] = max(alive_at_most[0], sum(r() is not None for r in decoded))
        return image

    monkeypatch.setattr(evaluator, "decode_image", counting)
    result, skipped = evaluator.evaluate_image_folder(
        str(model), str(root), str(tmp_path / "out"), variant="float32",
        labels=["red", "green", "blue"], latency_runs=0,
    )  # fmt: skip
    assert len(decoded) == 12
    # the image being decoded and the previous one (still named by the scoring loops)
    assert alive_at_most[0] <= 3, alive_at_most[0]
    assert [p for p, _ in skipped] == [str(root / "red" / "broken.png")]
    assert result.variants[0]["metrics"]["top1"] == 1.0
