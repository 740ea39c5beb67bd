"""The classifier architectures: published parameter counts, graph shape, input normalisation."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)


def _counts(model) -> tuple[int, int]:
    """(Keras' total, which includes BN moving statistics; the learnable count, which
    does not, as PyTorch and the EfficientNet papers count)."""
    from model_maker.image_classifier.train_lib import count_params

    counts = count_params(model)
    moving = sum(
        int(np.prod(w.shape))
        for w in model.weights
        if "moving_mean" in w.name or "moving_variance" in w.name
    )
    assert counts["learnable"] == counts["total"] - moving
    assert counts["trainable"] == counts["learnable"]  # a fresh model trains everything
    return counts["total"], counts["learnable"]


def test_mobilenet_v2_has_the_published_parameter_count():
    from model_maker.image_classifier.models.mobilenet_v2 import build_mobilenet_v2

    model = build_mobilenet_v2(1000)  # 224 px, width 1.0
    assert _counts(model) == (3_538_984, 3_504_872)
    assert model.output_shape == (None, 1000)


def test_resnet50_has_the_published_parameter_count():
    from model_maker.image_classifier.models.resnet50 import build_resnet50

    model = build_resnet50(1000)
    assert _counts(model) == (25_636_712, 25_583_592)


def test_efficientnet_lite0_has_the_published_parameter_count():
    from model_maker.image_classifier.models.efficientnet_lite import build_efficientnet_lite

    model = build_efficientnet_lite(1000)  # 224 px
    # 4,652,008 is the published (PyTorch-style, no BN statistics) count of Lite0.
    assert _counts(model) == (4_694_024, 4_652_008)


def _multi_avg_expected_learnable(num_classes: int) -> int:
    """The learnable parameters of Model Garden's MobileNetMultiAVG block list, counted by hand
    from the table (convs without bias, BN gamma + beta, dense with bias)."""

    def divisible(value: float) -> int:
        rounded = max(8, int(value + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * value else rounded

    blocks = [  # (kernel, stride, filters, expand ratio) from official/vision/.../mobilenet.py
        (3, 2, 32, 3), (3, 1, 32, 2), (5, 2, 64, 5), (3, 1, 64, 3), (3, 1, 64, 2),
        (3, 1, 64, 3), (5, 2, 128, 6), (3, 1, 128, 3), (3, 1, 128, 3), (3, 1, 128, 3),
        (3, 1, 160, 6), (3, 1, 160, 4), (3, 2, 192, 6), (5, 1, 192, 4), (5, 1, 192, 4),
        (5, 1, 192, 4),
    ]  # fmt: skip
    total = 3 * 3 * 3 * 32 + 2 * 32  # stem conv + BN
    channels = 32
    for kernel, _, filters, ratio in blocks:
        expanded = divisible(channels * ratio)
        total += channels * expanded + 2 * expanded  # expand 1x1 + BN
        total += kernel * kernel * expanded + 2 * expanded  # depthwise + BN
        total += expanded * filters + 2 * filters  # project 1x1 + BN
        channels = filters
    total += channels * 960 + 2 * 960  # top 1x1 conv + BN
    total += 960 * 1280 + 2 * 1280  # 1x1 conv after pooling + BN (no bias)
    return total + 1280 * num_classes + num_classes


def test_mobilenet_multi_avg_matches_the_model_garden_block_list():
    from model_maker.image_classifier.models.mobilenet_multi_avg import build_mobilenet_multi_avg

    model = build_mobilenet_multi_avg(1000)
    total, learnable = _counts(model)
    assert learnable == _multi_avg_expected_learnable(1000) == 4_948_872
    assert total == 4_985_416
    kinds = collections.Counter(type(layer).__name__ for layer in model.layers)
    assert kinds["DepthwiseConv2D"] == 16
    assert kinds["Conv2D"] == 1 + 16 * 2 + 2  # stem, expand + project per block, top, embedding
    assert kinds["Add"] == 11  # stride 1 and same channels: blocks 1, 3-5, 7-9, 11, 13-15
    assert kinds["ReLU"] == 1 + 16 * 2 + 2
    assert {layer.name for layer in model.layers if type(layer).__name__ == "Activation"} == set()
    # spatial size: 224 -> 7 after five stride-2 stages
    top = model.get_layer("mobilenet_multi_avg_top_relu")
    assert top.output_shape == (None, 7, 7, 960)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("index", "learnable"),
    # published (tensorflow/tpu lite README): 5.4 M, 6.1 M, 8.2 M, 13.0 M
    [(1, 5_416_680), (2, 6_092_072), (3, 8_197_096), (4, 13_006_568)],
)
def test_efficientnet_lite1_to_4_parameter_counts(index, learnable):
    from model_maker.image_classifier.image_classifier_spec import get_spec

    model = get_spec(f"efficientnet_lite{index}").build(1000)
    assert _counts(model)[1] == learnable


BUILDERS = {
    "mobilenet_v2": {},
    "resnet_50": {},
    "mobilenet_multi_avg": {},
    "efficientnet_lite0": {},
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_graph_is_flat_functional_with_the_normalisation_first(name):
    """What TFMOT needs: no nested model, no TFOpLambda, no subclassed layer; and the
    model maps raw pixels: its first layer computes (x - mean) / std."""
    import tf_keras as keras

    from model_maker.image_classifier.image_classifier_spec import get_spec

    spec = get_spec(name, image_size=64)
    model = spec.build(3, dropout_rate=0.1)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 3)
    kinds = {type(layer).__module__.split(".")[0] for layer in model.layers}
    assert kinds == {"tf_keras"}, kinds
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert "TFOpLambda" not in {type(layer).__name__ for layer in model.layers}
    norm = model.layers[1]
    assert norm.name == "input_normalization"
    pixels = np.array([[[[0.0, 127.0, 255.0]]]], np.float32)
    np.testing.assert_allclose(
        norm(pixels).numpy(), (pixels - spec.mean_rgb) / spec.stddev_rgb, atol=1e-6
    )
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.units == 3
    dropout = model.layers[-2]
    assert isinstance(dropout, keras.layers.Dropout) and dropout.rate == 0.1


def test_mobilenet_v2_width_multiplier_scales_the_model():
    from model_maker.image_classifier.models.mobilenet_v2 import build_mobilenet_v2

    small, full = build_mobilenet_v2(10, 96, alpha=0.5), build_mobilenet_v2(10, 96)
    assert small.count_params() < 0.6 * full.count_params()
    assert small.get_layer("Conv1").filters == 16  # 32 * 0.5
    assert small.get_layer("Conv_1").filters == 1280  # not scaled below 1.0


def test_mobilenet_multi_avg_keeps_1280_features_below_width_one():
    from model_maker.image_classifier.models.mobilenet_multi_avg import build_mobilenet_multi_avg

    model = build_mobilenet_multi_avg(10, 64, filter_size_scale=0.5)
    assert model.get_layer("mobilenet_multi_avg_stem_conv").filters == 16
    assert model.get_layer("mobilenet_multi_avg_embedding_conv").filters == 1280


def test_builders_reject_bad_arguments():
    from model_maker.image_classifier.models.efficientnet_lite import build_efficientnet_lite
    from model_maker.image_classifier.models.mobilenet_v2 import build_mobilenet_v2

    with pytest.raises(ValueError, match="num_classes"):
        build_mobilenet_v2(0, 64)
    with pytest.raises(ValueError, match="alpha"):
        build_mobilenet_v2(2, 64, alpha=0.0)
    with pytest.raises(ValueError, match="image_size"):
        build_mobilenet_v2(2, 16)
    with pytest.raises(ValueError, match="efficientnet-lite9"):
        build_efficientnet_lite(2, 64, backbone_name="efficientnet-lite9")
