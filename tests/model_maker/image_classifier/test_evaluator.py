"""evaluate_artifacts' per-image outputs: predictions.json, gallery/ thumbnails, report.html."""

from __future__ import annotations

import base64
import io
import json
import re
import types

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)

CLASSES = ["red", "green", "blue"]  # the conftest's label-map ids 2, 3, 7 in order
#: The conftest's eval split, in record order (file names ``<class>/<13..18>.png``).
EVAL = ["blue", "red", "green", "green", "red", "blue"]


def _colour_model():
    """Mean colour -> logits: red = 3 (r + g), green = -5 (never), blue = 3 b (pixels
    normalised to -1..1). So red and blue images are right, green ones are called red."""
    import tf_keras as keras

    from model_maker.image_classifier.models.head import classification_head, normalized_input

    images, x = normalized_input(32, 127.5, 127.5)
    model = keras.Model(images, classification_head(x, 3, 0.0), name="colour")
    kernel = np.array([[3.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    model.get_layer("logits").set_weights([kernel, np.array([0.0, -5.0, 0.0], np.float32)])
    return model


@pytest.fixture(scope="module")
def evaluated(colour_examples, tmp_path_factory):
    from model_maker.core.convert_options import ConvertOptions
    from model_maker.core.evaluate_options import EvaluateOptions
    from model_maker.image_classifier import evaluator
    from model_maker.image_classifier.tflite_set import export_tflite_set, representative_images

    root = tmp_path_factory.mktemp("cls_evaluator")
    model = _colour_model()
    export_tflite_set(
        str(root / "tflite"), model, labels=CLASSES,
        convert=ConvertOptions(variants=("float32", "ptq_int8"), representative_samples=8),
        representative_data=representative_images(str(colour_examples), 32, 8),
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        # the Keras float row from the same network (a trained model folder is slow to make)
        config = types.SimpleNamespace(image_size=32)
        patch.setattr(evaluator, "load_trained_model", lambda model_dir: (model, config))
        result = evaluator.evaluate_artifacts(
            str(colour_examples), str(root / "tflite"), str(root / "evaluation"),
            EvaluateOptions(candidate="ptq_int8", metric="top1", latency_runs=0, max_drop=100.0),
            model_dir="trained-model",
        )  # fmt: skip
    return result, root / "evaluation"


def _strict_json(path):
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"not strict: {c}"))


def test_predictions_are_aligned_with_the_images_and_agree_with_metrics(evaluated):
    result, out = evaluated
    doc = _strict_json(out / "predictions.json")
    assert set(doc) == {"version", "classes", "baseline", "images", "predictions"}
    assert (doc["version"], doc["classes"], doc["baseline"]) == (1, CLASSES, "keras_float")
    assert [i["index"] for i in doc["images"]] == list(range(6))
    assert [i["file_name"] for i in doc["images"]] == [f"{c}/{13 + k}.png" for k, c in
                                                       enumerate(EVAL)]  # fmt: skip
    labels = [i["label"] for i in doc["images"]]
    assert labels == [CLASSES.index(c) for c in EVAL]
    assert list(doc["predictions"]) == ["keras_float", "float32", "ptq_int8"]
    metrics = {e["variant"]: e for e in _strict_json(out / "metrics.json")["variants"]}
    for variant, rows in doc["predictions"].items():
        assert len(rows) == 6
        predicted = [p for p, _ in rows]
        assert predicted == [2, 0, 0, 0, 0, 2]  # the green images are called red
        assert all(0.0 <= prob <= 1.0 and round(prob, 3) == prob for _, prob in rows)
        confusion = np.zeros((3, 3), int)
        np.add.at(confusion, (labels, predicted), 1)
        assert confusion.tolist() == metrics[variant]["confusion_matrix"]
        top1 = np.mean(np.array(predicted) == labels)
        assert metrics[variant]["metrics"]["top1"] == pytest.approx(top1)
    keras_probs = [p for _, p in doc["predictions"]["keras_float"]]
    tflite_probs = [p for _, p in doc["predictions"]["float32"]]
    np.testing.assert_allclose(keras_probs, tflite_probs, atol=2e-3)
    assert {"predictions.json", "gallery", "metrics.json"} <= set(result.files)


def test_thumbnails_of_the_misclassified_images_only(evaluated):
    from PIL import Image

    _, out = evaluated
    doc = _strict_json(out / "predictions.json")
    assert [i["thumbnail"] for i in doc["images"]] == [
        None, None, "gallery/2.jpg", "gallery/3.jpg", None, None]  # fmt: skip
    assert sorted(p.name for p in (out / "gallery").iterdir()) == ["2.jpg", "3.jpg"]
    # records 15 (48 x 80) and 16 (90 x 60): kept at their size, never upscaled
    for name, size in (("2.jpg", (80, 48)), ("3.jpg", (60, 90))):
        with Image.open(out / "gallery" / name) as thumb:
            assert (thumb.format, thumb.mode, thumb.size) == ("JPEG", "RGB", size)
            assert np.asarray(thumb)[24, 30, 1] > 150  # the green image
    assert json.loads((out / "metrics.json").read_text())["classes"] == CLASSES


def test_report_html_shows_the_misclassified_images_with_each_prediction(evaluated):
    from PIL import Image

    _, out = evaluated
    page = (out / "report.html").read_text()
    assert "<h2>Misclassified images</h2>" in page
    shown = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" width="\d+" height="\d+" '
                       r'alt="([^"]+)">', page)  # fmt: skip
    assert [alt for _, alt in shown] == ["green/15.png", "green/16.png"]
    with Image.open(io.BytesIO(base64.b64decode(shown[0][0]))) as first:
        assert first.size == (80, 48)  # <= 160 px: the image's own size
    row = page[page.index("green/15.png") :].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[0] == "green"  # the true class, then each variant's prediction
    assert len(cells) == 4 and all(re.fullmatch(r"red \(0\.\d\d\) \u2717", c) for c in cells[1:])


def test_layer_errors_are_copied_and_their_worst_layers_reported(evaluated):
    result, out = evaluated
    source = out.parent / "tflite" / "layer_errors.json"  # written by the converter (8 images)
    assert (out / "layer_errors.json").read_bytes() == source.read_bytes()
    assert result.files["layer_errors.json"] == str(out / "layer_errors.json")
    layers = json.loads(source.read_text())["layers"]
    summary = _strict_json(out / "metrics.json")["layer_errors"]
    assert (summary["file"], summary["samples"], summary["variant"]) == (
        "layer_errors.json", 8, "ptq_int8")  # fmt: skip
    assert summary["worst"] == layers[:10] and summary["num_layers"] == len(layers)
    md = (out / "report.md").read_text()
    heading = "## Worst int8 layers (ptq_int8, RMSE in quantization steps, 8 calibration images)"
    section = md[md.index(heading) :]
    rows = [line.split(" | ") for line in section.split("\n") if re.match(r"\| \d+ \|", line)]
    assert [int(r[0][2:]) for r in rows] == [w["rank"] for w in layers[:10]]
    assert [r[1].split(" (+")[0] for r in rows] == [w["layer"] or "n/a" for w in layers[:10]]
    assert "logits" in {w["layer"] for w in layers}  # the Keras Dense layer's name
    assert [r[3] for r in rows] == [f"{w['rmse_over_scale']:.2f}" for w in layers[:10]]
    page = (out / "report.html").read_text()
    assert re.findall(r'<td title="([^"]*)">', page) == [w["tensor"] for w in layers[:10]]
