import pathlib

import pytest
import yaml

from pipeline.config import ConfigError, PipelineConfig, load_config, to_dict, write_resolved

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_validate_and_match_seed_api_values():
    config = load_config()
    assert isinstance(config, PipelineConfig)
    assert config.model.name == "efficientdet_lite0"
    assert config.model.tflite_max_detections == 25
    assert config.train.epochs == 50 and config.train.batch_size == 64
    assert (
        config.qat.learning_rate,
        config.qat.batch_size,
        config.qat.epochs,
        config.qat.decay_steps,
        config.qat.decay_rate,
    ) == (0.03, 32, 10, 231, 0.96)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "train:\n  epochs: 5\n  batch_size: 8\nconvert:\n  variants: [float32]\n"
        "evaluate:\n  candidate: float32\n"
    )
    config = load_config(path, ["train.epochs=3", "train.learning_rate=1", "qat.enabled=false"])
    assert config.train.epochs == 3
    assert config.train.batch_size == 8
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.qat.enabled is False
    assert config.convert.variants == ["float32"]


def test_list_override_from_comma_string():
    config = load_config(
        overrides=["convert.variants=float32,ptq_int8", "evaluate.candidate=ptq_int8"]
    )
    assert config.convert.variants == ["float32", "ptq_int8"]


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"'train\.epoch'; did you mean 'epochs'"):
        load_config(overrides=["train.epoch=3"])
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        load_config(overrides=["modle.name=x"])


def test_bad_values_name_key_and_allowed_values():
    with pytest.raises(
        ConfigError, match=r"model\.name: 'efficientdet_lite9'.*allowed: efficientdet_lite0"
    ):
        load_config(overrides=["model.name=efficientdet_lite9"])
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer"):
        load_config(overrides=["train.epochs=three"])
    with pytest.raises(ConfigError, match=r"train\.epochs: 0 must be at least 1"):
        load_config(overrides=["train.epochs=0"])
    with pytest.raises(ConfigError, match=r"data\.split\.ratios: fractions must sum to 1"):
        load_config(overrides=["data.split.ratios={train: 0.5, eval: 0.2}"])
    with pytest.raises(ConfigError, match=r"convert\.variants\[1\]: 'int4'"):
        load_config(overrides=["convert.variants=float32,int4"])
    with pytest.raises(ConfigError, match="multiple of 64"):
        load_config(overrides=["model.image_size=300"])
    with pytest.raises(ConfigError, match="qat_int8 needs qat.enabled"):
        load_config(overrides=["qat.enabled=false"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: [8\n")
    with pytest.raises(ConfigError, match=rf"{path}:4:1: invalid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_hparams_three_forms_normalised(tmp_path):
    hp = tmp_path / "hp.yaml"
    hp.write_text("alpha: 0.5\n")
    assert load_config(overrides=["model.hparams=alpha=0.5"]).model.hparams == {"alpha": 0.5}
    assert load_config(overrides=[f"model.hparams={hp}"]).model.hparams == {"alpha": 0.5}
    assert load_config(overrides=["model.hparams={alpha: 0.5}"]).model.hparams == {"alpha": 0.5}
    with pytest.raises(ConfigError, match="model.hparams"):
        load_config(overrides=["model.hparams=junk"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config(overrides=["train.epochs=7", "runner.pipeline_root=/tmp/x"])
    path = write_resolved(config, tmp_path / "out")
    again = load_config(path)
    assert to_dict(again) == to_dict(config)
    assert yaml.safe_load(open(path))["train"]["epochs"] == 7


def test_split_image_dirs_need_coco_split_files():
    with pytest.raises(ConfigError, match=r"image_dirs: \['val'\] have no COCO JSON"):
        load_config(
            overrides=["data.split.files={train: t.json}", "data.split.image_dirs={val: v}"]
        )
    with pytest.raises(ConfigError, match="only the coco format"):
        load_config(
            overrides=[
                "data.format=voc",
                "data.split.files={train: t.txt}",
                "data.split.image_dirs={train: t}",
            ]
        )
    config = load_config(
        overrides=["data.split.files={train: t.json}", "data.split.image_dirs={train: t}"]
    )
    assert config.data.split.image_dirs == {"train": "t"}


@pytest.mark.parametrize("name", ["demo", "raccoon", "coco2017"])
def test_shipped_configs_load_and_validate(name):
    config = load_config(str(REPO / "configs" / f"{name}.yaml"))
    assert config.model.task == "object_detection"
    assert config.qat.enabled and "qat_int8" in config.convert.variants


def test_imagenet_uri_only_for_models_with_offline_weights():
    assert load_config(overrides=["model.uri=imagenet"]).model.uri == "imagenet"
    with pytest.raises(ConfigError, match="model.uri: no offline ImageNet weights"):
        load_config(overrides=["model.uri=imagenet", "model.name=efficientdet_lite3"])
