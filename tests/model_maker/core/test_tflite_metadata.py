"""TFLite metadata written by qatflow: round trip, untouched model, packed labels, refusals, size.

The real runtime (MediaPipe Tasks) reads the same files in
test_tflite_metadata_mediapipe.py; the helpers building tiny models live here.
"""

import functools
import io
import zipfile

import numpy as np
import pytest

from model_maker.core import tflite_metadata as tm
from model_maker.core.errors import DataError, UsageError

LABELS = ("cat", "dog")


# --- tiny models (also used by the MediaPipe test) --------------------------------------


@functools.cache
def _tiny_keras_detector():
    from tests.model_maker.object_detector.tiny_detector import (
        build_tiny_detector,
        calibration_images,
        tiny_anchors,
    )

    return build_tiny_detector(), tiny_anchors(), calibration_images(16)


@functools.cache
def tiny_detector_tflite(variant: str, pre_nms_top_k: int = 0) -> bytes:
    """TFLite bytes of the tiny detector (NMS inside, 2 classes, 64x64, 84 anchors) exported
    by qatflow: float32 (float input), ptq_int8 or qat_int8 (uint8 input); a
    ``pre_nms_top_k`` below 84 puts the top-k ops before NMS. Built once per process."""
    import tempfile

    from model_maker.core.detection_postprocess import NMSOptions
    from model_maker.core.quantization import get_default_quantization_config
    from model_maker.object_detector.export import export_tflite
    from tests.model_maker.object_detector.tiny_detector import NUM_CLASSES, quantize_aware

    model, anchors, reps = _tiny_keras_detector()
    source = quantize_aware(model, reps) if variant == "qat_int8" else model
    config = None if variant == "float32" else get_default_quantization_config(reps, 16)
    with tempfile.TemporaryDirectory() as root:
        path = f"{root}/{variant}.tflite"
        nms = NMSOptions(pre_nms_top_k=pre_nms_top_k)
        export_tflite(source, path, config, anchors=anchors, num_classes=NUM_CLASSES, nms=nms)
        with open(path, "rb") as fh:
            return fh.read()


def tiny_classifier(num_classes: int = 3, *, uint8: bool = False, size: int = 32) -> bytes:
    """A tiny softmax image classifier ``images [1, size, size, 3]`` raw pixels -> ``[1, C]``."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    images = keras.Input((size, size, 3), batch_size=1, name="images")
    x = keras.layers.Rescaling(1.0 / 255.0)(images)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(images, x)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if uint8:
        rng = np.random.default_rng(0)

        def representative():
            for _ in range(8):
                image = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
                image[0, 0, 0], image[0, 0, 1] = 0.0, 255.0  # input range exactly 0..255
                yield [image]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return converter.convert()


def run_litert(model_bytes: bytes, image: np.ndarray) -> dict[str, np.ndarray]:
    """Signature outputs for one ``[H, W, 3]`` image of raw pixels (cast to the input dtype)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner()
    (name, detail), = runner.get_input_details().items()  # fmt: skip
    return runner(**{name: image[None].astype(detail["dtype"])})


@pytest.fixture(scope="module")
def detectors():
    return {v: tiny_detector_tflite(v) for v in ("float32", "ptq_int8")}


@pytest.fixture(scope="module")
def classifier():
    return tiny_classifier(3)


def _spec(**kwargs):
    info = tm.ModelInfo("tiny", version="7", author="qatflow tests", license="Apache-2.0")
    return tm.detector_metadata(info, num_classes=2, **kwargs)


# --- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant, dtype", [("float32", "float32"), ("ptq_int8", "uint8")])
def test_detector_metadata_round_trip(detectors, variant, dtype):
    written = tm.write_metadata(detectors[variant], _spec(), LABELS)
    md = tm.read_metadata(written)
    assert md.info == tm.ModelInfo(
        "tiny", _spec().info.description, "7", "qatflow tests", "Apache-2.0"
    )
    assert md.task == "object_detector" and md.labels == LABELS
    assert md.min_parser_version == "1.2.0"  # output tensor groups (schema 1.2.0)
    assert md.input.name == "image" and md.input.color_space == "RGB"
    assert (md.input.mean, md.input.std, md.input.dtype) == ((0.0,), (1.0,), dtype)
    assert (md.input.stats_min, md.input.stats_max) == ((0.0,), (255.0,))
    # one metadata entry per model output, in the model's output order, tied by signature name
    by_name = {o.name: o for o in md.outputs}
    assert sorted(by_name) == sorted(tm.DETECTOR_OUTPUT_NAMES)
    assert {o.name: o.model_output for o in md.outputs} == dict(tm.DETECTOR_SIGNATURE_OUTPUTS)
    assert [o.position for o in md.outputs] == [0, 1, 2, 3]
    location = by_name["location"]
    assert location.kind == tm.BOXES and location.box_index == (1, 0, 3, 2)
    assert (location.box_type, location.coordinate_type) == ("BOUNDARIES", "RATIO")
    assert by_name["category"].label_file == "labels.txt"
    assert by_name["category"].label_type == "TENSOR_VALUE_LABELS"
    assert by_name["score"].kind == tm.SCORES and by_name["score"].score_threshold is None
    assert by_name["number of detections"].kind == tm.COUNT
    assert md.groups == (("detection_result", ("location", "category", "score")),)
    assert md.associated_files == ("labels.txt",)
    assert tm.read_labels(written) == LABELS and tm.has_metadata(written)


def test_outputs_follow_the_model_output_order(detectors):
    from ai_edge_litert import schema_py_generated as schema

    written = tm.write_metadata(detectors["float32"], _spec(), LABELS)
    model = schema.Model.GetRootAs(written, 0)
    graph = model.Subgraphs(0)
    signature = model.SignatureDefs(0)
    names = {
        signature.Outputs(i).TensorIndex(): signature.Outputs(i).Name().decode()
        for i in range(signature.OutputsLength())
    }
    model_order = [names[graph.Outputs(i)] for i in range(graph.OutputsLength())]
    assert [o.model_output for o in tm.read_metadata(written).outputs] == model_order
    print(f"\nsubgraph output order of the exported detector: {model_order}")


def test_classifier_metadata_round_trip(classifier):
    spec = tm.classifier_metadata(
        tm.ModelInfo("tiny classifier"), num_classes=3, mean=[127.5], std=[127.5],
        score_threshold=0.2,
    )  # fmt: skip
    written = tm.write_metadata(classifier, spec, ["a", "b", "c"])
    md = tm.read_metadata(written)
    assert md.task == "image_classifier" and md.labels == ("a", "b", "c")
    assert md.min_parser_version == "1.0.0" and md.groups == ()
    assert (md.input.mean, md.input.std) == ((127.5,), (127.5,))
    assert (md.input.stats_min, md.input.stats_max) == ((-1.0,), (1.0,))
    (score,) = md.outputs
    assert (score.name, score.kind, score.label_type) == (
        "score",
        tm.PROBABILITIES,
        "TENSOR_AXIS_LABELS",
    )
    assert score.score_threshold == pytest.approx(0.2)
    assert md.info.description  # the default description of the task


def test_uint8_classifier_gets_uint8_ranges():
    model = tiny_classifier(3, uint8=True)
    spec = tm.classifier_metadata(tm.ModelInfo("q"), num_classes=3)
    md = tm.read_metadata(tm.write_metadata(model, spec, ["a", "b", "c"]))
    assert (md.input.dtype, md.input.stats_max) == ("uint8", (255.0,))


# --- the model itself is untouched --------------------------------------------------------


@pytest.mark.parametrize("variant", ["float32", "ptq_int8"])
def test_interpreter_outputs_are_unchanged(detectors, variant):
    from model_maker.core.tflite_convert import describe_tflite, list_ops

    original = detectors[variant]
    written = tm.write_metadata(original, _spec(), LABELS)
    rng = np.random.default_rng(5)
    for _ in range(3):
        image = rng.uniform(0, 255, (64, 64, 3)).astype(np.float32)
        before, after = run_litert(original, image), run_litert(written, image)
        assert sorted(before) == sorted(after)
        for key in before:
            np.testing.assert_array_equal(before[key], after[key])
    assert describe_tflite(written) == describe_tflite(original)
    assert list_ops(written) == list_ops(original)


def _metadata_entries(model_bytes):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    return [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]


def _buffer_data_positions(model_bytes):
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    positions = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength() >= 16:
            positions.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    return positions


def test_converter_metadata_and_buffer_alignment_are_kept(detectors):
    original = detectors["ptq_int8"]
    written = tm.write_metadata(original, _spec(), LABELS)
    assert _metadata_entries(written) == _metadata_entries(original) + [tm.METADATA_NAME]
    # TF 2.21's converter aligns weight buffers to 4 bytes; the rewrite aligns all to 16
    # (schema.fbs: force_align 16), which never hurts a runtime that maps the file.
    assert all(p % 4 == 0 for p in _buffer_data_positions(original))
    assert all(p % 16 == 0 for p in _buffer_data_positions(written))


# --- packed label file --------------------------------------------------------------------


def test_labels_are_an_uncompressed_zip_after_the_model(detectors):
    written = tm.write_metadata(detectors["float32"], _spec(), LABELS)
    with zipfile.ZipFile(io.BytesIO(written)) as archive:
        (entry,) = archive.infolist()
        assert entry.filename == "labels.txt" and entry.compress_type == zipfile.ZIP_STORED
        assert archive.read("labels.txt") == b"cat\ndog\n"
    # offsets count from the start of the file: the label bytes sit where the zip says
    name_length, extra_length = np.frombuffer(
        written[entry.header_offset + 26 : entry.header_offset + 30], "<u2"
    )
    start = entry.header_offset + 30 + int(name_length) + int(extra_length)
    assert written[start : start + entry.file_size] == b"cat\ndog\n"
    # the model flatbuffer ends where the zip starts, and still runs on its own
    model_part = written[: entry.header_offset]
    with pytest.raises(DataError, match="label file 'labels.txt', not packed"):
        tm.read_metadata(model_part)
    np.testing.assert_array_equal(
        run_litert(model_part, np.zeros((64, 64, 3)))["scores"],
        run_litert(written, np.zeros((64, 64, 3)))["scores"],
    )


def test_writing_is_reproducible_and_replaces_earlier_metadata(detectors):
    original = detectors["float32"]
    once = tm.write_metadata(original, _spec(), LABELS)
    assert tm.write_metadata(original, _spec(), LABELS) == once
    assert tm.write_metadata(once, _spec(), LABELS) == once  # idempotent
    relabelled = tm.write_metadata(once, _spec(), ["bird", "fish"])
    assert tm.read_metadata(relabelled).labels == ("bird", "fish")
    assert _metadata_entries(relabelled).count(tm.METADATA_NAME) == 1
    assert tm.packed_files(relabelled) == {"labels.txt": b"bird\nfish\n"}


def test_plain_model_has_no_metadata(detectors):
    assert tm.read_metadata(detectors["float32"]) is None
    assert tm.read_labels(detectors["float32"]) is None
    assert not tm.has_metadata(detectors["float32"])
    assert tm.packed_files(detectors["float32"]) == {}


def test_size_overhead(detectors, classifier):
    rows = []
    for name, model, spec, labels in (
        ("detector float32", detectors["float32"], _spec(), LABELS),
        ("detector ptq_int8", detectors["ptq_int8"], _spec(), LABELS),
        (
            "classifier float32",
            classifier,
            tm.classifier_metadata(tm.ModelInfo("c"), num_classes=3),
            ("a", "b", "c"),
        ),
    ):
        written = tm.write_metadata(model, spec, labels)
        md = tm.read_metadata(written)
        overhead = len(written) - len(model)
        rows.append((name, len(model), len(written), overhead, md.metadata_bytes))
        assert overhead < 4096
    print("\nmodel                 bytes   with metadata   overhead   metadata flatbuffer")
    for name, before, after, overhead, flatbuffer in rows:
        print(f"{name:20s} {before:7d} {after:15d} {overhead:10d} {flatbuffer:21d}")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, message",
    [
        (["cat"], "1 labels given for a model of 2 classes"),
        (["cat", "dog", "cow"], "3 labels given"),
        (["cat", "cat"], "labels repeat"),
        (["cat", ""], "label 1 .* is empty"),
        (["cat", " dog"], "surrounding blanks"),
        (["cat", "do\ng"], "line break"),
        ("catdog", "not one string"),
    ],
)
def test_bad_labels_are_usage_errors(detectors, labels, message):
    with pytest.raises(UsageError, match=message):
        tm.write_metadata(detectors["float32"], _spec(), labels)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: tm.detector_metadata(tm.ModelInfo(""), num_classes=2), "needs a model name"),
        (lambda: tm.ImageInput(mean=(0.0, 0.0), std=(1.0,)), "1 or 3 mean values"),
        (lambda: tm.ImageInput(std=(0.0,)), "must not be 0"),
        (lambda: tm.ImageInput(mean=(float("nan"),)), "finite"),
        (lambda: tm.ImageInput(color_space="BGR"), "color_space"),
        (lambda: _spec(box_order="xywh"), "box_order"),
        (lambda: _spec(outputs={"location": "boxes"}), "must name exactly"),
        (lambda: _spec(score_threshold=2.0), "score_threshold"),
        (lambda: tm.detector_metadata(tm.ModelInfo("x"), num_classes=0), "positive integer"),
    ],
)
def test_bad_specs_are_usage_errors(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def test_models_that_do_not_fit_the_spec_are_refused(detectors, classifier):
    with pytest.raises(UsageError, match="not a TFLite model"):
        tm.write_metadata(b"not a model at all", _spec(), LABELS)
    with pytest.raises(UsageError, match="no output 'boxes_typo'"):
        tm.write_metadata(
            detectors["float32"],
            _spec(outputs={**tm.DETECTOR_SIGNATURE_OUTPUTS, "location": "boxes_typo"}),
            LABELS,
        )
    with pytest.raises(UsageError, match="describes 4 outputs, the model has 1"):
        tm.write_metadata(classifier, _spec(), LABELS)
    with pytest.raises(UsageError, match=r"must be \[1, 5\]"):
        spec = tm.classifier_metadata(tm.ModelInfo("c"), num_classes=5)
        tm.write_metadata(classifier, spec, list("abcde"))
    # uint8 input: the runtime feeds raw pixels, which must be what the normalisation says
    with pytest.raises(UsageError, match="does not match the normalisation"):
        tm.write_metadata(detectors["ptq_int8"], _spec(mean=[127.5], std=[127.5]), LABELS)
