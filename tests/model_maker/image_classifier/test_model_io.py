"""Pretrained weights for classifiers: ImageNet (offline cache), Keras .h5, TF Hub stand-in."""

from __future__ import annotations

import numpy as np
import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.image_classifier.hparams import HParams


def test_imagenet_at_1000_classes_keeps_the_head_and_matches_pytorch():
    from model_maker.core.pretrained_backbone import read_reference
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.train_lib import create_model

    images, reference = read_reference("efficientnet-lite0")
    spec = get_spec("efficientnet_lite0", images.shape[1])
    model = create_model(spec, 1000, HParams(do_fine_tuning=True, l2_regularizer=0.0),
                         uri="imagenet")  # fmt: skip
    logits = model(images, training=False).numpy()
    assert np.abs(logits - reference).max() < 1e-4


def test_imagenet_for_fine_tuning_loads_the_backbone_and_keeps_a_new_head():
    from model_maker.core.pretrained_backbone import read_state
    from model_maker.core.pretrained_cache import weights_file
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.train_lib import create_model

    spec = get_spec("efficientnet_lite0", 64)
    model = create_model(spec, 2, HParams(seed=1), uri="imagenet")
    state = read_state(weights_file("efficientnet-lite0"))
    stem = model.get_layer("efficientnet_lite0_stem_conv").kernel.numpy()
    np.testing.assert_array_equal(stem, state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    head = model.get_layer("efficientnet_lite0_head_conv").kernel.numpy()
    np.testing.assert_array_equal(head[0, 0], state["_conv_head.weight"][:, :, 0, 0].T)
    logits = model.layers[-1]
    assert logits.kernel.shape == (1280, 2)
    assert [w.name for w in model.trainable_weights] == [w.name for w in logits.weights]


def test_imagenet_refused_where_no_offline_weights_exist():
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.train_lib import create_model

    with pytest.raises(ValueError, match="no offline ImageNet weights for 'efficientnet-lite3'"):
        create_model(get_spec("efficientnet_lite3", 64), 2, uri="imagenet")


def test_keras_h5_weights_load_by_layer_name(tmp_path):
    """A user's .h5 (here written from another model of the same spec) loads by name;
    the head of another class count is skipped."""
    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.train_lib import create_model

    spec = get_spec("mobilenet_v2", 32)
    source = create_model(spec, 5, HParams(do_fine_tuning=True, seed=2))
    path = tmp_path / "mobilenet_v2_weights.h5"
    source.save_weights(str(path), save_format="h5")
    target = create_model(spec, 3, HParams(do_fine_tuning=True, seed=9), uri=str(path))
    for name in ("Conv1", "block_16_project"):
        np.testing.assert_array_equal(
            target.get_layer(name).kernel.numpy(), source.get_layer(name).kernel.numpy()
        )
    assert target.layers[-1].kernel.shape[-1] == 3  # not the source's 5 classes


def test_tf_hub_handle_stand_in_copies_variables_by_name(tmp_path):
    """A local SavedModel standing in for a TF Hub feature-vector handle (nothing is
    fetched; the same loader takes hub handles): variables copied by name and shape."""
    import tensorflow as tf

    from model_maker.image_classifier.image_classifier_spec import get_spec
    from model_maker.image_classifier.train_lib import create_model

    spec = get_spec("efficientnet_lite0", 32)
    source = create_model(spec, 2, HParams(do_fine_tuning=True, seed=4))
    module = tf.Module()
    module.variables_list = [w for w in source.weights if "_logits" not in w.name]
    handle = tmp_path / "hub_module"
    tf.saved_model.save(module, str(handle))
    target = create_model(spec, 2, HParams(do_fine_tuning=True, seed=5), uri=str(handle))
    stem = "efficientnet_lite0_stem_conv"
    np.testing.assert_array_equal(
        target.get_layer(stem).kernel.numpy(), source.get_layer(stem).kernel.numpy()
    )
    # the head had no counterpart: it keeps its own initialisation
    assert not np.array_equal(target.layers[-1].kernel.numpy(), source.layers[-1].kernel.numpy())
