import dataclasses

import pytest

from model_maker.core.hparams import HParamsError
from model_maker.object_detector.model_config import (
    MODEL_NAMES,
    EfficientDetLiteConfig,
    get_model_config,
)

# name: (backbone, image, fpn filters, fpn repeats, head repeats, anchor scale, width, depth)
PUBLISHED = {
    "efficientdet-lite0": ("efficientnet-lite0", 320, 64, 3, 3, 3.0, 1.0, 1.0),
    "efficientdet-lite1": ("efficientnet-lite1", 384, 88, 4, 3, 3.0, 1.0, 1.1),
    "efficientdet-lite2": ("efficientnet-lite2", 448, 112, 5, 3, 3.0, 1.1, 1.2),
    "efficientdet-lite3": ("efficientnet-lite3", 512, 160, 6, 4, 4.0, 1.2, 1.4),
    "efficientdet-lite4": ("efficientnet-lite4", 640, 224, 7, 4, 4.0, 1.4, 1.8),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_numbers(name):
    config = get_model_config(name)
    got = (
        config.backbone_name,
        config.image_size,
        config.fpn_num_filters,
        config.fpn_cell_repeats,
        config.box_class_repeats,
        config.anchor_scale,
        config.width_coefficient,
        config.depth_coefficient,
    )
    assert got == PUBLISHED[name]
    assert (config.min_level, config.max_level, config.num_scales) == (3, 7, 3)
    assert config.aspect_ratios == (1.0, 2.0, 0.5)
    assert config.num_anchors_per_location == 9
    assert (config.bn_momentum, config.bn_epsilon) == (0.99, 1e-3)
    assert (config.mean_rgb, config.stddev_rgb) == (127.0, 128.0)


def test_names_accept_underscores_and_case():
    assert MODEL_NAMES == tuple(sorted(PUBLISHED))
    assert get_model_config("efficientdet_lite2") == get_model_config("efficientdet-lite2")
    assert get_model_config("EfficientDet-Lite3").model_name == "efficientdet-lite3"


def test_unknown_name_suggests_nearest():
    with pytest.raises(HParamsError, match="did you mean 'efficientdet-lite0'"):
        get_model_config("efficientdet_lit0")


def test_unknown_key_suggests_nearest():
    with pytest.raises(HParamsError, match="did you mean 'image_size'"):
        get_model_config("efficientdet-lite0", image_sise=256)


def test_overrides_are_applied_and_validated():
    config = get_model_config("efficientdet-lite0", image_size=256, aspect_ratios=[1, 2])
    assert config.image_size == 256
    assert config.aspect_ratios == (1.0, 2.0)
    assert config.num_anchors_per_location == 6
    assert config.fpn_num_filters == 64  # untouched
    with pytest.raises(HParamsError, match="image_size"):
        get_model_config("efficientdet-lite0", image_size=16)
    with pytest.raises(HParamsError, match="fpn_num_filters"):
        get_model_config("efficientdet-lite0", fpn_num_filters=0)
    with pytest.raises(HParamsError, match="backbone_name"):
        get_model_config("efficientdet-lite0", backbone_name="efficientnet-lite4")


def test_config_is_frozen_and_serialisable():
    config = get_model_config("efficientdet-lite1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.image_size = 1  # type: ignore[misc]
    data = config.as_dict()
    assert data["aspect_ratios"] == [1.0, 2.0, 0.5]
    assert EfficientDetLiteConfig(**{**data, "aspect_ratios": (1.0, 2.0, 0.5)}) == config


def test_replace_checks_keys():
    config = get_model_config("efficientdet-lite0")
    assert config.replace(image_size=384).image_size == 384
    with pytest.raises(HParamsError, match="did you mean 'anchor_scale'"):
        config.replace(anchor_scal=2.0)
