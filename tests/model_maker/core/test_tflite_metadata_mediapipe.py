"""The real runtime reads qatflow's TFLite metadata: MediaPipe Tasks 0.10.14 in its side venv.

For float32, ptq_int8 and qat_int8 (marked slow: the QAT wrap) files of a
tiny detector (NMS inside) exported by qatflow, with metadata written by
:mod:`model_maker.core.tflite_metadata`, MediaPipe's ``ObjectDetector`` loads
each file and its detections on a few images equal LiteRT's on the same file
(pixel boxes within 1 px, scores within 1e-4, class names from the embedded
labels); MediaPipe's metadata reader returns our labels
and normalisation, and the metadata has the same structure as the one
MediaPipe's own writer produces. The same for ``ImageClassifier`` on a tiny
classifier (float32 and uint8). Images are the model's input size, so that
MediaPipe's resize is the identity and LiteRT sees the very same pixels.

The side venv is built with ``make mediapipe`` when missing (about a minute;
``make test`` depends on it); a venv that cannot be built fails the tests.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

from model_maker.core import tflite_metadata as tm
from tests.model_maker.core.test_tflite_metadata import (
    run_litert,
    tiny_classifier,
    tiny_detector_tflite,
)

ROOT = pathlib.Path(__file__).resolve().parents[3]
SIDE_VENV = ROOT / ".tools" / "mediapipe-venv"
CHECK = ROOT / "tools" / "mediapipe_check.py"
LABELS = ("cat", "dog")


@pytest.fixture(scope="module")
def mediapipe_python() -> pathlib.Path:
    """The side venv's python, built by ``make mediapipe`` if it is not there yet."""
    if not (SIDE_VENV / ".installed").exists():
        proc = subprocess.run(
            ["make", "mediapipe"], cwd=ROOT, capture_output=True, text=True, timeout=1800
        )
        # `make test` builds it first; a failure to build it is a failure, never a skip.
        if proc.returncode != 0:
            pytest.fail(f"make mediapipe failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return SIDE_VENV / "bin" / "python"


def run_check(python: pathlib.Path, task: str, models, images, *extra: str) -> list[dict]:
    args = [str(python), str(CHECK), "--task", task]
    for model in models:
        args += ["--model", str(model)]
    for image in images:
        args += ["--image", str(image)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([*args, *extra], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["mediapipe"] == "0.10.14"
    return report["models"]


def write_images(
    directory: pathlib.Path, count: int, size: int
) -> list[tuple[pathlib.Path, np.ndarray]]:
    """PNG images (dark noise, one bright square) of exactly the model's input size."""
    from PIL import Image

    rng = np.random.default_rng(11)
    out = []
    for i in range(count):
        image = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
        side = size * 3 // 8
        y, x = rng.integers(0, size - side, 2)
        image[y : y + side, x : x + side] = rng.integers(150, 250, 3).astype(np.uint8)
        path = directory / f"image{i}.png"
        Image.fromarray(image).save(path)
        out.append((path, image))
    return out


def _structure(metadata_json: dict) -> dict:
    """The metadata without free text (names, descriptions, versions) and empty tables."""

    def strip(value):
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if (k != "description" and v not in ({}, None)) or k == "content_properties"
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(metadata_json["subgraph_metadata"])


@pytest.mark.parametrize(
    ("variant", "top_k"),
    [
        ("float32", 0),
        ("ptq_int8", 0),
        ("ptq_int8", 20),  # TOPK_V2, GATHER and BITCAST before the op
        pytest.param("qat_int8", 0, marks=pytest.mark.slow),
    ],
)
def test_mediapipe_object_detector_matches_litert(mediapipe_python, tmp_path, variant, top_k):
    content = tiny_detector_tflite(variant, top_k)
    info = tm.ModelInfo("tiny detector", version="1", author="qatflow tests", license="MIT")
    spec = tm.detector_metadata(info, num_classes=len(LABELS))
    raw, with_md = tmp_path / f"{variant}.raw.tflite", tmp_path / f"{variant}.tflite"
    raw.write_bytes(content)
    with_md.write_bytes(tm.write_metadata(content, spec, LABELS))
    images = write_images(tmp_path, 3, 64)
    (entry,) = run_check(mediapipe_python, "object_detector", [with_md], [p for p, _ in images])
    (ref,) = run_check(
        mediapipe_python, "object_detector", [raw], [p for p, _ in images],
        "--reference-labels", ",".join(LABELS),
    )  # fmt: skip
    assert "error" not in entry, entry.get("error")
    # MediaPipe's metadata reader sees our labels and normalisation
    md = entry["metadata"]
    assert md["labels"] == list(LABELS) and md["packed_files"] == ["labels.txt"]
    assert md["normalization"] == {"mean": [0.0], "std": [1.0]}
    assert md["json"]["name"] == "tiny detector" and md["json"]["license"] == "MIT"
    # ... and the same structure MediaPipe's own writer gives the same model
    assert _structure(md["json"]) == _structure(ref["reference_metadata"]["json"])
    # without metadata the runtime refuses the file (what issue 16 reported)
    assert "require TFLite Model Metadata" in ref["error"]

    total = 0
    for (path, image), result, ref_result in zip(
        images, entry["results"], ref["reference_results"], strict=True
    ):
        assert result["detections"] == ref_result["detections"]  # = MediaPipe's own writer
        out = run_litert(with_md.read_bytes(), image)
        count = int(out["num_detections"][0])
        found = result["detections"]
        assert len(found) == count, f"{path.name}: MediaPipe {len(found)}, LiteRT {count}"
        h, w = image.shape[:2]
        for k, detection in enumerate(found):
            ymin, xmin, ymax, xmax = (float(v) for v in out["boxes"][0, k])
            # MediaPipe reports origin and size in whole pixels, each truncated; an origin
            # left of / above the image is clamped to 0 while the size is kept (seen here).
            origin = [max(xmin * w, 0.0), max(ymin * h, 0.0)]
            expected = [*origin, (xmax - xmin) * w, (ymax - ymin) * h]
            np.testing.assert_allclose(detection["box"], expected, atol=1.0)
            (category,) = detection["categories"]
            assert abs(category["score"] - float(out["scores"][0, k])) <= 1e-4
            assert category["category_name"] == LABELS[int(out["classes"][0, k])]
        total += count
    assert total > 0


@pytest.mark.parametrize("uint8", [False, True], ids=["float32", "uint8"])
def test_mediapipe_image_classifier_matches_litert(mediapipe_python, tmp_path, uint8):
    labels = ("ant", "bee", "wasp")
    model = tiny_classifier(len(labels), uint8=uint8)
    spec = tm.classifier_metadata(tm.ModelInfo("tiny classifier"), num_classes=len(labels))
    path = tmp_path / "classifier.tflite"
    path.write_bytes(tm.write_metadata(model, spec, labels))
    images = write_images(tmp_path, 2, 32)
    (entry,) = run_check(mediapipe_python, "image_classifier", [path], [p for p, _ in images])
    assert "error" not in entry, entry.get("error")
    assert entry["metadata"]["labels"] == list(labels)
    assert entry["metadata"]["normalization"] == {"mean": [0.0], "std": [1.0]}

    from ai_edge_litert.interpreter import Interpreter

    (detail,) = Interpreter(model_content=model).get_output_details()
    scale, zero_point = detail["quantization"]
    for (_, image), result in zip(images, entry["results"], strict=True):
        (head,) = result["heads"]
        assert head["head_name"] == "score"
        (scores,) = run_litert(model, image).values()
        scores = scores[0].astype(np.float64)
        if uint8:
            scores = scale * (scores - zero_point)
        assert len(head["categories"]) == len(labels)
        for category in head["categories"]:
            assert category["category_name"] == labels[category["index"]]
            assert abs(category["score"] - scores[category["index"]]) <= 1e-4


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split("<!-- deploy-snippet -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_deploy_snippet_runs_a_file_the_converter_wrote(mediapipe_python, tmp_path):
    """The README's five MediaPipe lines, run as they are on the converter's ptq_int8 file."""
    from model_maker.core.convert_options import ConvertOptions, MetadataOptions
    from model_maker.core.tflite_manifest import read_manifest
    from model_maker.object_detector.options import TFLiteSetOptions
    from model_maker.object_detector.tflite_set import export_tflite_set
    from tests.model_maker.core.test_tflite_metadata import _tiny_keras_detector

    model, anchors, reps = _tiny_keras_detector()
    options = TFLiteSetOptions(
        convert=ConvertOptions(
            variants=("float32", "ptq_int8"),
            representative_samples=16,
            metadata=MetadataOptions(version="3", author="qatflow tests"),
        )
    )
    out = tmp_path / "tflite"
    export_tflite_set(
        str(out),
        model,
        anchors=anchors,
        num_classes=len(LABELS),
        label_map={1: LABELS[0], 2: LABELS[1]},
        options=options,
        representative_data=reps,
    )
    entries = {e["variant"]: e for e in read_manifest(str(out))}
    for entry in entries.values():
        assert entry["metadata"]["present"] and entry["metadata"]["version"] == tm.METADATA_VERSION
        assert entry["bytes"] == (out / entry["file"]).stat().st_size
        assert tm.read_labels((out / entry["file"]).read_bytes()) == LABELS

    snippet = _readme_snippet()
    assert len([line for line in snippet.splitlines() if line.strip()]) == 5
    (image_path, image), *_ = write_images(tmp_path, 1, 64)
    model_path = out / "ptq_int8.tflite"
    code = snippet.replace("runs/demo/serving/v1/qat_int8.tflite", str(model_path)).replace(
        "image.png", str(image_path)
    )
    assert code != snippet
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(mediapipe_python), "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    out_litert = run_litert(model_path.read_bytes(), image)
    expected = min(5, int(out_litert["num_detections"][0]))
    assert expected > 0 and len(lines) == expected, proc.stdout
    for line, k in zip(lines, range(expected), strict=True):
        name, score, _ = line.split(" ", 2)
        assert name == LABELS[int(out_litert["classes"][0, k])]
        assert abs(float(score) - float(out_litert["scores"][0, k])) <= 1e-3
