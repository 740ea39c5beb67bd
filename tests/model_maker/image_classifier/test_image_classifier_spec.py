"""The ModelSpec of each architecture: names, input sizes, normalisation, lookup."""

from __future__ import annotations

import dataclasses

import pytest

import model_maker  # noqa: F401  (Keras 2 before TensorFlow loads)
from model_maker.core.errors import UsageError
from model_maker.image_classifier import image_classifier_spec as specs


def test_every_architecture_has_a_spec_with_its_size_and_normalisation():
    table = {
        name: (spec.image_size, spec.mean_rgb, spec.stddev_rgb)
        for name, spec in specs.SPECS.items()
    }
    assert table == {
        "mobilenet_v2": (224, 127.5, 127.5),
        "resnet_50": (224, 127.5, 127.5),
        "mobilenet_multi_avg": (224, 127.5, 127.5),
        "efficientnet_lite0": (224, 127.0, 128.0),
        "efficientnet_lite1": (240, 127.0, 128.0),
        "efficientnet_lite2": (260, 127.0, 128.0),
        "efficientnet_lite3": (280, 127.0, 128.0),
        "efficientnet_lite4": (300, 127.0, 128.0),
    }
    assert specs.mobilenet_v2_spec is specs.SPECS["mobilenet_v2"]
    assert specs.efficientnet_lite4_spec.name == "efficientnet_lite4"


def test_get_spec_matches_names_loosely_and_changes_the_size():
    assert specs.get_spec("ResNet50") is specs.resnet_50_spec
    assert specs.get_spec("efficientnet-lite2") is specs.efficientnet_lite2_spec
    small = specs.get_spec("mobilenet_v2", image_size=96)
    assert small.input_image_shape == (96, 96) and small.image_size == 96
    assert specs.mobilenet_v2_spec.image_size == 224  # the module's spec is untouched


def test_unknown_spec_names_the_nearest():
    with pytest.raises(UsageError, match="did you mean 'mobilenet_v2'"):
        specs.get_spec("mobilenet_v22")


def test_spec_rejects_bad_sizes():
    with pytest.raises(UsageError, match="square"):
        dataclasses.replace(specs.mobilenet_v2_spec, input_image_shape=(224, 192))
    with pytest.raises(UsageError, match="at least 32"):
        specs.get_spec("resnet_50", image_size=16)


def test_spec_build_uses_its_options_and_the_given_dropout():
    model = specs.get_spec("efficientnet_lite0", image_size=64).build(4, dropout_rate=0.05)
    assert model.get_layer("efficientnet_lite0_dropout").rate == 0.05
    assert model.get_layer("efficientnet_lite0_logits").units == 4
    default = specs.get_spec("mobilenet_multi_avg", image_size=64).build(2)
    assert default.get_layer("dropout").rate == 0.3  # the architecture's own default
