"""EfficientDet-Lite0 (128 px, 2 classes) through every TFLite variant, on a real image.

Slow: five conversions of the full Lite0 graph (tens of seconds each on an idle
machine). The class head gets wide random kernels so that the scores differ
clearly between anchors (an untrained head scores every anchor ~0.01, and NMS
order among near-ties is arbitrary).
"""

import numpy as np
import pytest

from model_maker.core.detection_postprocess import NMSOptions

pytestmark = pytest.mark.slow

SIZE = 128
NUM_CLASSES = 2
VARIANTS = ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8")
SCORE_THRESHOLD = 0.05


@pytest.fixture(scope="module")
def lite0():
    import tf_keras as keras

    from model_maker.object_detector.anchors import Anchors
    from model_maker.object_detector.model import build_efficientdet_lite
    from model_maker.object_detector.model_config import get_model_config

    keras.utils.set_random_seed(3)
    config = get_model_config("efficientdet-lite0", image_size=SIZE)
    model = build_efficientdet_lite(config, NUM_CLASSES)
    layer = model.get_layer("class_net_predict_pointwise")
    kernel, bias = layer.get_weights()
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.1, kernel.shape).astype(np.float32)
    layer.set_weights([kernel, rng.normal(-2.0, 1.0, bias.shape).astype(np.float32)])
    for bn in model.layers:  # positive shifts keep the head's ReLU6 features off zero
        if bn.name.startswith("class_net_conv") and "_bn_" in bn.name:
            gamma, beta, mean, var = bn.get_weights()
            bn.set_weights([gamma, rng.uniform(0.5, 1.5, beta.shape).astype(np.float32), mean, var])
    return model, Anchors.from_config(config)


@pytest.fixture(scope="module")
def raccoon(raccoon_dir):
    from PIL import Image

    from model_maker.core.litert_detector import resize_and_pad

    def load(name):
        pixels = np.asarray(Image.open(raccoon_dir / "images" / name).convert("RGB"))
        return pixels, resize_and_pad(pixels, SIZE, SIZE)[0]

    test = load("raccoon-1.jpg")
    calibration = [load(f"raccoon-{i}.jpg")[1] for i in range(2, 34)]
    return test, calibration


@pytest.fixture(scope="module")
def exported(lite0, raccoon, tmp_path_factory):
    """variant -> TFLiteExport, converted on first use (so `-k float32` converts one)."""
    from model_maker.core.quantization import quantization_config_for_variant
    from model_maker.object_detector.export import export_tflite
    from model_maker.object_detector.qat_model import quantize_efficientdet

    model, anchors = lite0
    _, calibration = raccoon
    root = tmp_path_factory.mktemp("lite0")

    class Lazy(dict):
        def __missing__(self, variant):
            source = model
            if variant == "qat_int8":
                source = quantize_efficientdet(model)
                source(np.stack(calibration[:8]), training=True)
            config = quantization_config_for_variant(
                variant, calibration if variant.endswith("int8") else None, quantization_steps=32
            )
            self[variant] = export_tflite(
                source,
                str(root / f"{variant}.tflite"),
                config,
                anchors=anchors,
                num_classes=NUM_CLASSES,
                nms=NMSOptions(score_threshold=SCORE_THRESHOLD),
            )
            return self[variant]

    return Lazy()


def _invoke(path, pixels):
    from model_maker.core.litert_detector import TFLiteDetector

    detector = TFLiteDetector(path)
    model_input, _ = detector.preprocess(pixels)
    return detector.invoke(model_input)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_returns_the_four_outputs_on_a_real_image(exported, raccoon, variant):
    (pixels, _), _ = raccoon
    out = _invoke(exported[variant].path, pixels)
    assert out["boxes"].shape == (1, 25, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == (1, 25) and out["classes"].dtype == np.float32
    assert out["scores"].shape == (1, 25) and out["scores"].dtype == np.float32
    assert out["num_detections"].shape == (1,) and out["num_detections"].dtype == np.float32
    n = int(out["num_detections"][0])
    assert n >= 1
    assert np.all(np.diff(out["scores"][0, :n]) <= 0)
    assert set(out["classes"][0, :n]) <= {0.0, 1.0}


def test_float32_detections_equal_keras_plus_postprocess(exported, lite0, raccoon):
    from model_maker.core.postprocess import postprocess_global

    model, anchors = lite0
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    (pixels, _), _ = raccoon
    # the whole photo squeezed to 128x128: no flat padding, whose equal scores tie in NMS
    image = np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE)), np.float32)
    runner = Interpreter(model_path=exported["float32"].path).get_signature_runner()
    out = runner(images=image[None])
    class_logits, box_encodings = model(image[None], training=False)
    boxes, classes, scores, num = postprocess_global(
        class_logits, box_encodings, anchors.boxes_yxyx, SIZE, NMSOptions(25, SCORE_THRESHOLD, 0.5)
    )
    n = int(num[0])
    assert int(out["num_detections"][0]) == n
    # NMS order among equal scores is undefined: compare up to the first near-tie.
    ref_scores = scores.numpy()[0, :n]
    ties = np.flatnonzero(np.abs(np.diff(ref_scores)) < 1e-6)
    n = int(ties[0]) if len(ties) else n
    assert n >= 3  # an untrained head ties often (ReLU6-saturated features)
    np.testing.assert_allclose(out["boxes"][0, :n], boxes.numpy()[0, :n], atol=1e-3)
    np.testing.assert_allclose(out["scores"][0, :n], scores.numpy()[0, :n], atol=1e-4)
    np.testing.assert_array_equal(out["classes"][0, :n], classes.numpy()[0, :n])


@pytest.mark.parametrize("variant", ["ptq_int8", "qat_int8"])
def test_int8_variants_have_int8_convs_and_are_about_4x_smaller(exported, variant):
    from model_maker.core.tflite_convert import list_ops

    with open(exported[variant].path, "rb") as fh:
        ops = list_ops(fh.read())
    kernels = [op.weight_type for op in ops if op.weight_type]
    assert len(kernels) > 100 and set(kernels) == {"INT8"}
    for op in ops:
        # the pre-NMS top-k (TOPK_V2 on the dequantized best scores, the anchors'
        # bit patterns gathered as int32 and BITCAST back) feeds the float op
        if op.name not in ("TFLite_Detection_PostProcess", "DEQUANTIZE", "TOPK_V2", "BITCAST"):
            assert set(op.input_types) | set(op.output_types) <= {"INT8", "UINT8", "INT32"}, op
    ratio = exported["float32"].num_bytes / exported[variant].num_bytes
    print(f"{variant}: {exported[variant].num_bytes} bytes, float32/{variant} = {ratio:.2f}")
    assert 3.0 < ratio < 4.5
    assert exported[variant].description.inputs[0].dtype == "uint8"
