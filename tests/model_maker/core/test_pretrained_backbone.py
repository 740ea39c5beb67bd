"""Offline ImageNet EfficientNet-Lite weights onto our backbone.

The logits test needs the cache that ``make pretrained`` fills (``make test``
depends on it); without the cache it fails with the message naming the target.
"""

import numpy as np
import pytest
import tf_keras as keras

from model_maker.core.efficientnet_lite import build_efficientnet_lite_classifier
from model_maker.core.pretrained_backbone import (
    assign_torch_state,
    load_imagenet_backbone,
    read_reference,
    torch_source,
)
from model_maker.core.pretrained_cache import (
    ENV_VAR,
    OFFLINE_BACKBONES,
    PretrainedWeightsMissing,
)

P = "efficientnet_lite0"


@pytest.mark.parametrize("backbone", OFFLINE_BACKBONES)
def test_converted_classifier_matches_pytorch_reference_logits(backbone):
    images, reference = read_reference(backbone)
    assert images.shape[0] == 2 and reference.shape == (2, 1000)
    model = build_efficientnet_lite_classifier(backbone, images.shape[1])
    loaded = load_imagenet_backbone(model, backbone)
    # every weighted layer got its arrays (nothing kept its random init)
    assert loaded.layers == sum(1 for layer in model.layers if layer.weights)
    assert loaded.variables == len(model.weights)
    assert loaded.head_arrays_unused == 0
    logits = model(images, training=False).numpy()
    assert np.abs(reference).max() > 1.0  # a real, non-degenerate reference
    assert np.abs(logits - reference).max() < 1e-4
    np.testing.assert_array_equal(logits.argmax(1), reference.argmax(1))


def test_torch_source_names():
    assert torch_source(f"{P}_stem_conv", P) == ("conv", "_conv_stem")
    assert torch_source(f"{P}_stem_bn", P) == ("bn", "_bn0")
    assert torch_source(f"{P}_blocks_3_expand_conv", P) == ("conv", "_blocks.3._expand_conv")
    assert torch_source(f"{P}_blocks_3_expand_bn", P) == ("bn", "_blocks.3._bn0")
    assert torch_source(f"{P}_blocks_12_depthwise_conv", P) == (
        "depthwise",
        "_blocks.12._depthwise_conv",
    )
    assert torch_source(f"{P}_blocks_12_depthwise_bn", P) == ("bn", "_blocks.12._bn1")
    assert torch_source(f"{P}_blocks_0_project_bn", P) == ("bn", "_blocks.0._bn2")
    assert torch_source(f"{P}_head_bn", P) == ("bn", "_bn1")
    assert torch_source(f"{P}_logits", P) == ("dense", "_fc")
    assert torch_source(f"{P}_blocks_0_add", P) is None
    assert torch_source("fpn_cells_0_conv", P) is None


def _tiny_model(with_logits: bool = False) -> keras.Model:
    """Stem conv+BN, one depthwise block (3x3 dw + BN, 1x1 project + BN); optional dense."""
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, padding="same", name=f"{P}_stem_conv")(x_in)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name=f"{P}_stem_bn")(x)
    x = keras.layers.DepthwiseConv2D(
        3, use_bias=False, padding="same", name=f"{P}_blocks_0_depthwise_conv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{P}_blocks_0_depthwise_bn")(x)
    x = keras.layers.Conv2D(2, 1, use_bias=False, name=f"{P}_blocks_0_project_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{P}_blocks_0_project_bn")(x)
    x = keras.layers.Conv2D(5, 1, name="fpn_cells_other")(x)  # not backbone: untouched
    if with_logits:
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(3, name=f"{P}_logits")(x)
    return keras.Model(x_in, x, name="tiny")


def _bn(state, key, n, base):
    state[f"{key}.weight"] = np.full(n, base + 1, np.float32)
    state[f"{key}.bias"] = np.full(n, base + 2, np.float32)
    state[f"{key}.running_mean"] = np.full(n, base + 3, np.float32)
    state[f"{key}.running_var"] = np.full(n, base + 4, np.float32)


def _tiny_state(with_head: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    state = {
        "_conv_stem.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),  # OIHW
        "_blocks.0._depthwise_conv.weight": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "_blocks.0._project_conv.weight": rng.normal(size=(2, 4, 1, 1)).astype(np.float32),
    }
    _bn(state, "_bn0", 4, 0)
    _bn(state, "_blocks.0._bn1", 4, 10)
    _bn(state, "_blocks.0._bn2", 2, 20)
    if with_head:
        state["_conv_head.weight"] = rng.normal(size=(8, 2, 1, 1)).astype(np.float32)
        _bn(state, "_bn1", 8, 30)
        state["_fc.weight"] = rng.normal(size=(3, 5)).astype(np.float32)
        state["_fc.bias"] = np.arange(3, dtype=np.float32)
    return state


def test_assign_converts_layouts():
    model = _tiny_model()
    other_before = model.get_layer("fpn_cells_other").get_weights()
    state = _tiny_state()
    result = assign_torch_state(model, state, P)
    assert (result.layers, result.variables, result.arrays_used) == (6, 15, 15)
    assert result.head_arrays_unused == 7  # the detector has no classifier head
    stem = model.get_layer(f"{P}_stem_conv").kernel.numpy()  # HWIO
    assert stem.shape == (3, 3, 3, 4)
    # kernel[h, w, i, o] == torch[o, i, h, w]
    assert stem[2, 0, 1, 3] == state["_conv_stem.weight"][3, 1, 2, 0]
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    dw = model.get_layer(f"{P}_blocks_0_depthwise_conv").depthwise_kernel.numpy()  # HWC1
    assert dw.shape == (3, 3, 4, 1)
    assert dw[0, 2, 3, 0] == state["_blocks.0._depthwise_conv.weight"][3, 0, 0, 2]
    gamma, beta, mean, var = model.get_layer(f"{P}_blocks_0_project_bn").get_weights()
    assert (gamma[0], beta[0], mean[0], var[0]) == (21.0, 22.0, 23.0, 24.0)
    other_after = model.get_layer("fpn_cells_other").get_weights()
    for before, after in zip(other_before, other_after, strict=True):
        np.testing.assert_array_equal(before, after)


def test_assign_dense_transposes():
    model = _tiny_model(with_logits=True)
    state = _tiny_state()
    state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1."))}
    result = assign_torch_state(model, state, P)
    assert result.head_arrays_unused == 0
    kernel, bias = model.get_layer(f"{P}_logits").get_weights()
    assert kernel.shape == (5, 3)
    assert kernel[4, 1] == state["_fc.weight"][1, 4]
    np.testing.assert_array_equal(bias, [0.0, 1.0, 2.0])


def test_classifier_needs_its_head_arrays():
    model = _tiny_model(with_logits=True)
    # a classifier must use every array: the unused head conv/BN arrays are an error
    with pytest.raises(ValueError, match="match no layer"):
        assign_torch_state(model, _tiny_state(), P)


def test_missing_array_is_an_error_and_nothing_is_assigned():
    model = _tiny_model()
    before = [w.numpy().copy() for w in model.weights]
    state = _tiny_state()
    del state["_blocks.0._bn2.running_var"]
    with pytest.raises(ValueError, match=r"no array '_blocks\.0\._bn2\.running_var'"):
        assign_torch_state(model, state, P, source="fake.npz")
    for b, w in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(b, w.numpy())


def test_shape_mismatch_is_an_error():
    model = _tiny_model()
    state = _tiny_state()
    state["_blocks.0._project_conv.weight"] = np.zeros((3, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"shape \(1, 1, 4, 2\) but '_blocks\.0\._project_conv"):
        assign_torch_state(model, state, P)


def test_unused_array_is_an_error():
    model = _tiny_model()
    state = _tiny_state()
    state["_blocks.1._project_conv.weight"] = np.zeros((2, 2, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"1 arrays .* match no layer .*_blocks\.1\._project"):
        assign_torch_state(model, state, P)


def test_backbone_layer_without_counterpart_is_an_error():
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name=f"{P}_stem_conv")(x_in)
    x = keras.layers.Conv2D(4, 1, name=f"{P}_mystery_conv")(x)
    model = keras.Model(x_in, x)
    with pytest.raises(ValueError, match=f"{P}_mystery_conv.* no counterpart"):
        assign_torch_state(model, _tiny_state(), P)


def test_no_backbone_layers_is_an_error():
    x_in = keras.Input((8, 8, 3))
    model = keras.Model(x_in, keras.layers.Conv2D(4, 3, name="other")(x_in))
    with pytest.raises(ValueError, match="no weighted layers named efficientnet_lite0_"):
        assign_torch_state(model, _tiny_state(), P)


def test_npz_round_trip_through_the_cache_dir(tmp_path, monkeypatch):
    np.savez(tmp_path / "efficientnet-lite0.npz", **_tiny_state())
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    model = _tiny_model()
    assert load_imagenet_backbone(model, "efficientnet_lite0").variables == 15


def test_missing_cache_names_the_make_target(tmp_path):
    with pytest.raises(PretrainedWeightsMissing, match="make pretrained"):
        load_imagenet_backbone(_tiny_model(), "efficientnet-lite0", str(tmp_path))


@pytest.mark.parametrize("backbone", ["efficientnet-lite3", "efficientnet-lite4"])
def test_lite3_lite4_have_no_offline_weights(backbone, tmp_path):
    with pytest.raises(ValueError, match="no offline ImageNet weights"):
        load_imagenet_backbone(_tiny_model(), backbone, str(tmp_path))
