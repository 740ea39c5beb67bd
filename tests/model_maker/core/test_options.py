import pytest

from model_maker.core.errors import SettingsError
from model_maker.core.options import CLASSIFIER_MODELS, DETECTOR_MODELS, ModelOptions, TrainOptions


def test_model_names_are_the_task_packages_own():
    from model_maker.image_classifier.image_classifier_spec import SPECS
    from model_maker.object_detector.model_config import canonical_model_name

    assert tuple(SPECS) == CLASSIFIER_MODELS
    for name in DETECTOR_MODELS:
        canonical_model_name(name)  # raises for a name the detector does not build


def test_model_options_parse_hparams_and_check_the_backbone():
    assert ModelOptions(hparams="alpha=0.5,gamma=2").hparams == {"alpha": 0.5, "gamma": 2}
    with pytest.raises(SettingsError, match=r"^uri: uri 'pretrained://efficientnet-lite1'"):
        ModelOptions(uri="pretrained://efficientnet-lite1")
    assert ModelOptions(uri="pretrained://efficientnet-lite0").offline_backbone() == (
        "efficientnet-lite0"
    )
    assert ModelOptions(task="image_classification", name="resnet_50").offline_backbone() == ""
    assert (
        ModelOptions(
            task="image_classification", name="efficientnet_lite1", uri="imagenet"
        ).offline_backbone()
        == "efficientnet-lite1"
    )


def test_train_options_rules():
    with pytest.raises(SettingsError, match=r"^var_freeze_expr: not a regular expression"):
        TrainOptions(var_freeze_expr="(")
    with pytest.raises(SettingsError, match=r"^moving_average_decay: 1\.0 must be in \[0, 1\)"):
        TrainOptions(moving_average_decay=1.0)
