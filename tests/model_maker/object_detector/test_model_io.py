"""Saving/loading the trained detector and the pretrained ``uri`` routes (local and TF Hub)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from model_maker.object_detector.model import build_efficientdet_lite
from model_maker.object_detector.model_config import get_model_config
from model_maker.object_detector.model_io import (
    TrainedModelConfig,
    load_pretrained_weights,
    load_trained_model,
    save_trained_model,
)

ARCH = {"image_size": 128, "fpn_num_filters": 16, "fpn_cell_repeats": 1, "box_class_repeats": 1}


def _model(num_classes, seed):
    keras.utils.set_random_seed(seed)
    return build_efficientdet_lite(get_model_config("efficientdet-lite0", **ARCH), num_classes)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _model(3, seed=1)
    config = get_model_config("efficientdet-lite0", **ARCH)
    trained = TrainedModelConfig(
        model_name=config.model_name,
        num_classes=3,
        image_size=128,
        hparams={"gamma": 1.5},
        label_map={1: "a", 2: "b", 3: "c"},
        model_config=config.as_dict(),
    )
    root = tmp_path_factory.mktemp("trained")
    save_trained_model(model, trained, str(root / "keras"))
    return root, model


def test_load_trained_model_rebuilds_identical_outputs(saved):
    root, model = saved
    rebuilt, config = load_trained_model(str(root))  # the folder holding keras/
    assert config.label_map == {1: "a", 2: "b", 3: "c"} and config.num_classes == 3
    images = tf.random.uniform([1, 128, 128, 3], 0, 255, seed=0)
    for a, b in zip(model(images), rebuilt(images), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_uri_local_folder_loads_by_name_and_skips_other_class_heads(saved):
    root, source = saved
    target = _model(2, seed=2)  # another number of classes
    assert load_pretrained_weights(target, str(root)) == -1
    src = {w.name: w.numpy() for w in source.weights}
    backbone = [w for w in target.weights if w.name.startswith("efficientnet")]
    assert all(np.array_equal(w.numpy(), src[w.name]) for w in backbone)
    # the class prediction conv has another shape: skipped, keeps its own init
    mismatched = [w for w in target.weights if w.shape != src[w.name].shape]
    assert mismatched and all(w.name.startswith("class_net") for w in mismatched)


def test_uri_empty_is_random_init():
    model = _model(2, seed=3)
    before = [w.numpy() for w in model.weights]
    assert load_pretrained_weights(model, "") == 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))


def test_uri_hub_handle_maps_variables_by_name(saved, tmp_path):
    """A local stand-in for a TF Hub module: a SavedModel whose variables carry the names
    (with an extra scope prefix, as hub modules do) of some of the model's weights."""
    _, source = saved
    picked = [w for w in source.weights if w.name.startswith("efficientnet")][:20]
    module = tf.Module()
    with tf.name_scope("hub_scope"):
        module.vars = [tf.Variable(w.numpy() + 1.0, name=w.name[:-2]) for w in picked]
    path = str(tmp_path / "hub_module")
    tf.saved_model.save(module, path)

    target = _model(2, seed=4)
    assigned = load_pretrained_weights(target, path)
    assert assigned == len(picked)
    by_name = {w.name: w for w in target.weights}
    for w in picked:
        np.testing.assert_allclose(by_name[w.name].numpy(), w.numpy() + 1.0)


def test_uri_unreachable_hub_handle_is_a_clear_error():
    model = _model(2, seed=5)
    with pytest.raises(ValueError, match="could not load the TF Hub handle"):
        load_pretrained_weights(model, "/nonexistent/hub/module")


def test_hub_route_calls_tensorflow_hub_load(saved, tmp_path, monkeypatch):
    """When tensorflow_hub imports, ``hub.load(uri)`` is what loads the handle."""
    import sys
    import types

    _, source = saved
    weight = next(w for w in source.weights if w.name.startswith("efficientnet"))
    module = tf.Module()
    module.vars = [tf.Variable(weight.numpy() * 0 + 7.0, name=weight.name[:-2])]
    path = str(tmp_path / "handle")
    tf.saved_model.save(module, path)
    calls = []
    fake_hub = types.ModuleType("tensorflow_hub")
    fake_hub.load = lambda handle: calls.append(handle) or tf.saved_model.load(path)
    monkeypatch.setitem(sys.modules, "tensorflow_hub", fake_hub)

    target = _model(2, seed=6)
    handle = "https://models.example/efficientdet/lite0/feature-vector/1"  # never fetched
    assert load_pretrained_weights(target, handle) == 1
    assert calls == [handle]
    assert float(next(w for w in target.weights if w.name == weight.name).numpy().max()) == 7.0


# -- the offline ImageNet backbone route (needs the `make pretrained` cache) ----------


def test_imagenet_uri_loads_only_the_backbone():
    from model_maker.core.pretrained_backbone import read_state
    from model_maker.core.pretrained_cache import weights_file

    model = _model(2, seed=3)
    fpn_before = model.get_layer("resample_p6_conv").kernel.numpy().copy()
    assert load_pretrained_weights(model, "imagenet") == 240  # every backbone variable
    state = read_state(weights_file("efficientnet-lite0"))
    np.testing.assert_array_equal(
        model.get_layer("efficientnet_lite0_stem_conv").kernel.numpy(),
        state["_conv_stem.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        model.get_layer("efficientnet_lite0_blocks_15_project_bn").moving_variance.numpy(),
        state["_blocks.15._bn2.running_var"],
    )
    np.testing.assert_array_equal(model.get_layer("resample_p6_conv").kernel.numpy(), fpn_before)


def test_pretrained_scheme_must_name_the_models_backbone():
    model = _model(2, seed=3)
    assert load_pretrained_weights(model, "pretrained://efficientnet_lite0") == 240
    with pytest.raises(ValueError, match="names backbone 'efficientnet-lite1'"):
        load_pretrained_weights(model, "pretrained://efficientnet-lite1")


def test_imagenet_uri_for_lite3_is_a_clear_error():
    model = build_efficientdet_lite(get_model_config("efficientdet-lite3", **ARCH), 2)
    with pytest.raises(ValueError, match="no offline ImageNet weights for 'efficientnet-lite3'"):
        load_pretrained_weights(model, "imagenet")


def test_imagenet_uri_without_cache_names_the_make_target(tmp_path, monkeypatch):
    from model_maker.core.pretrained_cache import ENV_VAR, PretrainedWeightsMissing

    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(PretrainedWeightsMissing, match="make pretrained"):
        load_pretrained_weights(_model(2, seed=3), "imagenet")
