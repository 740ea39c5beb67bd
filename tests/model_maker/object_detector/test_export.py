"""export_tflite on a tiny stand-in detector (seconds per conversion): every variant's
outputs, int8 kernels, uint8 input scale, raw outputs + anchors, equality with the
TF post-processing. EfficientDet-Lite0 itself is in test_export_lite0.py."""

import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.quantization import QuantizationConfig, get_default_quantization_config
from model_maker.core.tflite_convert import describe_tflite, list_ops
from model_maker.object_detector.export import export_tflite, pin_pixel_range
from tests.model_maker.object_detector.tiny_detector import (
    IMAGE_SIZE,
    NUM_CLASSES,
    build_tiny_detector,
    calibration_images,
    quantize_aware,
    tiny_anchors,
)

MAX_DET = 10
SCORE_THRESHOLD = 0.05
IOU_THRESHOLD = 0.5
NMS = NMSOptions(MAX_DET, SCORE_THRESHOLD, IOU_THRESHOLD)
# Ops an int8 model may hold besides int8 kernels: the float detection op and the
# DEQUANTIZE feeding it (the input QUANTIZE converts uint8 -> int8).
NON_INT8_ALLOWED = {"TFLite_Detection_PostProcess", "DEQUANTIZE"}


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_detector(), tiny_anchors()


@pytest.fixture(scope="module")
def image():
    return calibration_images(1, seed=7)[0][None]  # [1, 64, 64, 3] float32


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    """Every variant of the tiny detector: name -> (TFLiteExport, bytes)."""
    model, anchors = tiny
    root = tmp_path_factory.mktemp("tiny_tflite")
    reps = calibration_images(16)
    configs = {
        "float32": (model, None),
        "float16": (model, QuantizationConfig.for_float16()),
        "dynamic_range": (model, QuantizationConfig.for_dynamic()),
        "ptq_int8": (model, get_default_quantization_config(reps, quantization_steps=16)),
        "qat_int8": (quantize_aware(model, reps), get_default_quantization_config(reps, 16)),
    }
    out = {}
    for name, (m, config) in configs.items():
        result = export_tflite(
            m,
            str(root / f"{name}.tflite"),
            config,
            anchors=anchors,
            num_classes=NUM_CLASSES,
            nms=NMS,
        )
        out[name] = (result, (root / f"{name}.tflite").read_bytes())
    out["qat_keras_model"] = configs["qat_int8"][0]
    return out


def _run(path_or_bytes, image):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=path_or_bytes)
    runner = interpreter.get_signature_runner("serving_default")
    detail = runner.get_input_details()["images"]
    if detail["dtype"] != np.float32:
        scale, zero_point = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        image = np.clip(np.round(image / scale + zero_point), info.min, info.max)
    return runner(images=image.astype(detail["dtype"]))


def _reference(model, anchors, image):
    from model_maker.core.postprocess import postprocess_global

    class_logits, box_encodings = model(image, training=False)
    boxes, classes, scores, num = postprocess_global(
        class_logits, box_encodings, anchors.boxes_yxyx, IMAGE_SIZE,
        NMS,
    )  # fmt: skip
    n = int(num[0])
    return boxes.numpy()[0, :n], classes.numpy()[0, :n], scores.numpy()[0, :n]


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic_range", "ptq_int8", "qat_int8"])
def test_every_variant_has_the_four_named_outputs(exported, image, variant):
    result, content = exported[variant]
    assert result.num_bytes == len(content)
    names = [o.name for o in result.description.outputs]
    assert names == ["boxes", "classes", "num_detections", "scores"]
    shapes = {o.name: o.shape for o in result.description.outputs}
    assert shapes == {
        "boxes": (1, MAX_DET, 4),
        "classes": (1, MAX_DET),
        "scores": (1, MAX_DET),
        "num_detections": (1,),
    }
    assert {o.dtype for o in result.description.outputs} == {"float32"}
    assert result.description.inputs[0].shape == (1, IMAGE_SIZE, IMAGE_SIZE, 3)
    out = _run(content, image)
    n = int(out["num_detections"][0])
    assert n >= 1 and n <= MAX_DET
    assert np.all(np.diff(out["scores"][0, :n]) <= 0)  # sorted
    assert np.all(out["scores"][0, :n] >= SCORE_THRESHOLD)
    classes = out["classes"][0, :n]
    assert np.all(classes == np.round(classes)) and set(classes) <= {0.0, 1.0}


def test_float32_detections_equal_the_keras_model_postprocessed(exported, tiny, image):
    model, anchors = tiny
    out = _run(exported["float32"][1], image)
    boxes, classes, scores = _reference(model, anchors, image)
    n = int(out["num_detections"][0])
    assert n == len(boxes) >= 3
    np.testing.assert_allclose(out["boxes"][0, :n], boxes, atol=1e-3)
    np.testing.assert_allclose(out["scores"][0, :n], scores, atol=1e-5)
    np.testing.assert_array_equal(out["classes"][0, :n], classes)


@pytest.mark.parametrize("variant", ["ptq_int8", "qat_int8"])
def test_int8_variants_use_int8_kernels_and_a_raw_pixel_uint8_input(exported, variant):
    result, content = exported[variant]
    ops = list_ops(content)
    weighted = [op for op in ops if op.weight_type is not None]
    assert len(weighted) == 5 + 3 + 6  # backbone convs, depthwise per level, 2 heads per level
    assert {op.weight_type for op in weighted} == {"INT8"}
    for op in ops:
        if op.name in NON_INT8_ALLOWED:
            continue
        types = set(op.input_types) | set(op.output_types)
        assert types <= {"INT8", "UINT8", "INT32"}, (op.name, types)
    assert [op.name for op in ops if op.custom] == ["TFLite_Detection_PostProcess"]
    model_input = result.description.inputs[0]
    assert model_input.dtype == "uint8"
    if variant == "ptq_int8":  # calibration pinned to 0..255: pixels go in unchanged
        assert (model_input.scale, model_input.zero_point) == (1.0, 0)
    assert result.quantization["supported_ops"] == ["TFLITE_BUILTINS_INT8"]


def _iou(a, b):
    inter_h = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_w = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_h * inter_w
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_ptq_int8_detections_stay_close_to_the_float_model(exported, tiny, image):
    model, anchors = tiny
    boxes, classes, scores = _reference(model, anchors, image)
    int8_out = _run(exported["ptq_int8"][1], image)
    # Random weights: scores are close and NMS order may swap, so compare the best
    # score and check that the int8 top box is one of the Keras detections.
    assert abs(int8_out["scores"][0, 0] - scores[0]) < 0.05
    top_box, top_class = int8_out["boxes"][0, 0], int8_out["classes"][0, 0]
    matches = [_iou(top_box, boxes[i]) for i in range(len(boxes)) if classes[i] == top_class]
    assert max(matches) > 0.7


def test_weight_types_and_sizes_of_the_float_variants(exported):
    def kernel_types(name):
        return {op.weight_type for op in list_ops(exported[name][1]) if op.weight_type}

    assert kernel_types("float32") == {"FLOAT32"}
    assert kernel_types("dynamic_range") <= {"INT8", "FLOAT32"}
    assert "INT8" in kernel_types("dynamic_range")
    fp16_ops = list_ops(exported["float16"][1])
    assert any(op.name == "DEQUANTIZE" and op.input_types == ("FLOAT16",) for op in fp16_ops)
    sizes = {name: exported[name][0].num_bytes for name in ("float32", "float16", "ptq_int8")}
    assert sizes["float16"] < sizes["float32"]
    assert sizes["ptq_int8"] < sizes["float16"]


def test_float_input_int8_variant(tiny, tmp_path, image):
    model, anchors = tiny
    config = get_default_quantization_config(calibration_images(8), 8)
    result = export_tflite(
        model, str(tmp_path / "f.tflite"), config, anchors=anchors, num_classes=NUM_CLASSES,
        nms=NMSOptions(MAX_DET, SCORE_THRESHOLD), input_type="float32",
    )  # fmt: skip
    assert result.description.inputs[0].dtype == "float32"
    assert result.quantization["inference_input_type"] == "float32"
    assert {op.weight_type for op in list_ops((tmp_path / "f.tflite").read_bytes())} >= {"INT8"}


def test_raw_export_writes_encodings_scores_and_anchors(tiny, tmp_path, image, exported):
    from model_maker.core.litert_detector import TFLiteDetector

    model, anchors = tiny
    path = tmp_path / "raw.tflite"
    result = export_tflite(
        model, str(path), None, anchors=anchors, num_classes=NUM_CLASSES, with_nms=False
    )
    assert not result.with_nms
    assert result.anchors_path == str(tmp_path / "raw.anchors.npy")
    np.testing.assert_array_equal(np.load(result.anchors_path), anchors.centers_yxhw_normalized())
    shapes = {o.name: o.shape for o in result.description.outputs}
    assert shapes == {"box_encodings": (1, 84, 4), "class_scores": (1, 84, NUM_CLASSES)}
    assert not [op for op in list_ops(path.read_bytes()) if op.custom]
    out = _run(path.read_bytes(), image)
    class_logits, box_encodings = model(image, training=False)
    np.testing.assert_allclose(out["box_encodings"], box_encodings.numpy(), atol=1e-4)
    np.testing.assert_allclose(out["class_scores"], 1 / (1 + np.exp(-class_logits)), atol=1e-5)
    # The Evaluator's detector scores the raw file (Python NMS) like the NMS file.
    raw = TFLiteDetector(path, anchors=result.anchors_path, nms=NMS)
    nms = TFLiteDetector(
        model_content=exported["float32"][1], nms=NMSOptions(MAX_DET, SCORE_THRESHOLD)
    )
    pixels = image[0].astype(np.uint8)
    a, b = raw.detect(pixels), nms.detect(pixels)
    np.testing.assert_allclose(a.boxes_yxyx, b.boxes_yxyx, atol=1e-2)
    np.testing.assert_array_equal(a.classes, b.classes)


def test_int8_top_k_keeps_the_anchors_float_and_equals_the_raw_file_plus_python_nms(
    tiny, tmp_path, image
):
    """pre_nms_top_k below the anchor count: the file sends only the k best anchors to
    the op, and the anchors it gathers for them stay exact float32 (an int8 GATHER
    would shift them by up to half its step): its detections equal the int8 raw
    file's outputs post-processed in Python with the same top-k. The anchor scale is
    2.3, not the tiny model's 2.0, whose anchors (multiples of 1/16) an int8 step
    happens to hold exactly."""
    from model_maker.core.litert_detector import TFLiteDetector
    from model_maker.object_detector.anchors import Anchors

    model, tiny_scale = tiny
    anchors = Anchors(
        tiny_scale.min_level, tiny_scale.max_level, 1, (1.0,), 2.3, tiny_scale.image_size
    )
    assert anchors.num_anchors == tiny_scale.num_anchors
    nms = NMSOptions(MAX_DET, SCORE_THRESHOLD, IOU_THRESHOLD, pre_nms_top_k=20)
    reps = calibration_images(16)
    files = {}
    for with_nms in (True, False):
        path = tmp_path / f"ptq_{with_nms}.tflite"
        files[with_nms] = export_tflite(
            model,
            str(path),
            get_default_quantization_config(reps, quantization_steps=16),
            anchors=anchors,
            num_classes=NUM_CLASSES,
            nms=nms,
            with_nms=with_nms,
        )
    ops = list_ops((tmp_path / "ptq_True.tflite").read_bytes())
    names = [op.name for op in ops]
    assert names.count("TOPK_V2") == 1 and names.count("BITCAST") == 1
    gathers = [op for op in ops if op.name == "GATHER"]
    assert sorted(op.input_types[0] for op in gathers) == ["INT32", "INT8", "INT8"]
    pixels = image[0].astype(np.uint8)
    in_file = TFLiteDetector(files[True].path).detect(pixels)
    in_python = TFLiteDetector(files[False].path, anchors=files[False].anchors_path, nms=nms)
    want = in_python.detect(pixels)
    assert 3 <= len(in_file) <= 20 and len(in_file) == len(want)
    np.testing.assert_allclose(in_file.boxes_yxyx, want.boxes_yxyx, atol=1e-5)
    np.testing.assert_allclose(in_file.scores, want.scores, atol=1e-6)
    np.testing.assert_array_equal(in_file.classes, want.classes)


def test_pin_pixel_range_sets_one_black_and_one_white_pixel():
    image = np.full((1, 4, 4, 3), 100.0, np.float32)
    pinned = pin_pixel_range(image)
    assert pinned.min() == 0.0 and pinned.max() == 255.0
    assert np.count_nonzero(pinned != 100.0) == 6  # two pixels x three channels
    assert image.max() == 100.0  # input untouched


def test_integer_input_without_calibration_is_refused(tiny, tmp_path):
    model, anchors = tiny
    with pytest.raises(ValueError, match="full-integer"):
        export_tflite(model, str(tmp_path / "x.tflite"), None, anchors=anchors,
                      num_classes=NUM_CLASSES, input_type="uint8")  # fmt: skip
    with pytest.raises(ValueError, match="anchors"):
        export_tflite(model, str(tmp_path / "x.tflite"), None, anchors=np.zeros((5, 4)),
                      num_classes=NUM_CLASSES)  # fmt: skip
    assert not (tmp_path / "x.tflite").exists()


def test_describe_reads_names_not_indices(exported):
    content = exported["ptq_int8"][1]
    description = describe_tflite(content)
    assert description.signature == "serving_default"
    assert description.output("num_detections").shape == (1,)
    with pytest.raises(KeyError):
        description.output("logits")
