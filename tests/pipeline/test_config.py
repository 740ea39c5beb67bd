import dataclasses
import math
import pathlib
import subprocess
import sys
import typing

import pytest
import yaml

from model_maker.core.errors import SettingsError, UsageError
from model_maker.core.settings import from_json, to_json
from pipeline.config import (
    ConfigError,
    PipelineConfig,
    StageOptions,
    load_config,
    to_dict,
    write_resolved,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_validate_and_match_seed_api_values():
    config = load_config()
    assert isinstance(config, PipelineConfig)
    assert config.model.name == "efficientdet_lite0"
    assert config.postprocess.max_detections == 25
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
    assert config.convert.variants == ("float32",)


def test_list_override_from_comma_string():
    config = load_config(
        overrides=["convert.variants=float32,ptq_int8", "evaluate.candidate=ptq_int8"]
    )
    assert config.convert.variants == ("float32", "ptq_int8")


def test_unknown_key_suggests_nearest():
    with pytest.raises(SettingsError, match=r"train\.epoch: unknown key; did you mean 'epochs'"):
        load_config(overrides=["train.epoch=3"])
    with pytest.raises(SettingsError, match="did you mean 'model'"):
        load_config(overrides=["modle.name=x"])


def test_bad_values_name_key_and_allowed_values():
    with pytest.raises(
        SettingsError, match=r"model\.name: 'efficientdet_lite9'.*allowed: efficientdet_lite0"
    ):
        load_config(overrides=["model.name=efficientdet_lite9"])
    with pytest.raises(SettingsError, match=r"train\.epochs: expected an integer"):
        load_config(overrides=["train.epochs=three"])
    with pytest.raises(SettingsError, match=r"train\.epochs: 0 must be at least 1"):
        load_config(overrides=["train.epochs=0"])
    with pytest.raises(SettingsError, match=r"data\.split_ratios: fractions must sum to 1"):
        load_config(overrides=["data.split_ratios={train: 0.5, eval: 0.2}"])
    with pytest.raises(SettingsError, match=r"convert\.variants\[1\]: 'int4'"):
        load_config(overrides=["convert.variants=float32,int4"])
    with pytest.raises(SettingsError, match="multiple of 64"):
        load_config(overrides=["model.image_size=300"])
    with pytest.raises(SettingsError, match="qat_int8 needs qat.enabled"):
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
    with pytest.raises(SettingsError, match="model.hparams"):
        load_config(overrides=["model.hparams=junk"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config(overrides=["train.epochs=7", "runner.pipeline_root=/tmp/x"])
    path = write_resolved(config, tmp_path / "out")
    again = load_config(path)
    assert to_dict(again) == to_dict(config)
    assert again == config
    assert yaml.safe_load(open(path))["train"]["epochs"] == 7


def test_split_image_dirs_need_coco_split_files():
    with pytest.raises(SettingsError, match=r"image_dirs: \['val'\] have no COCO JSON"):
        load_config(
            overrides=["data.split_files={train: t.json}", "data.split_image_dirs={val: v}"]
        )
    with pytest.raises(SettingsError, match="only the coco format"):
        load_config(
            overrides=[
                "data.format=voc",
                "data.split_files={train: t.txt}",
                "data.split_image_dirs={train: t}",
            ]
        )
    config = load_config(
        overrides=["data.split_files={train: t.json}", "data.split_image_dirs={train: t}"]
    )
    assert config.data.split_image_dirs == {"train": "t"}


@pytest.mark.parametrize(
    "name, task",
    [
        ("demo", "object_detection"),
        ("raccoon", "object_detection"),
        ("coco2017", "object_detection"),
        ("hymenoptera", "image_classification"),
        ("imagenet", "image_classification"),
    ],
)
def test_shipped_configs_load_and_validate(name, task):
    config = load_config(str(REPO / "configs" / f"{name}.yaml"))
    assert config.model.task == task
    assert config.qat.enabled and "qat_int8" in config.convert.variants


# --- image classification: the same sections, the classifier's defaults ----------------


def test_classification_starts_from_the_classifier_defaults():
    from model_maker.image_classifier.hparams import HParams
    from model_maker.image_classifier.options import ClassifierTrainerOptions

    config = load_config(overrides=["model.task=image_classification"])
    assert config.model.name == "efficientnet_lite0"
    assert config.data.format == "folder"
    assert config.evaluate.metric == "top1"
    assert (config.train.learning_rate, config.train.batch_size, config.train.epochs) == (
        HParams.learning_rate,
        HParams.batch_size,
        HParams.epochs,
    )
    assert config.train.var_freeze_expr == "" and config.train.moving_average_decay == 0.0
    trainer = config.stages().trainer
    assert isinstance(trainer, ClassifierTrainerOptions)
    assert trainer.hparams().learning_rate == HParams.learning_rate
    # what the config sets wins over the task's defaults
    config = load_config(
        overrides=[
            "model.task=image_classification",
            "model.name=mobilenet_v2",
            "train.epochs=3",
            "evaluate.metric=top5",
            "model.hparams.do_fine_tuning=true",
        ]
    )
    assert (config.model.name, config.train.epochs, config.evaluate.metric) == (
        "mobilenet_v2",
        3,
        "top5",
    )
    assert config.stages().trainer.hparams().do_fine_tuning is True
    # and a detector config keeps the detector's defaults
    assert load_config().train.var_freeze_expr == "(efficientnet|fpn_cells|resample_p6)"


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.hparams.dropout=0.1", "model.hparams: unknown image classifier hparams key "
         "'dropout'; did you mean 'dropout_rate'?"),
        ("model.hparams.dropout_rate=1.5", "model.hparams.dropout_rate: 1.5 must be in [0, 1)"),
        ("model.hparams.label_smoothing=-0.1", "model.hparams.label_smoothing:"),
        ("train.var_freeze_expr=efficientnet", "train.var_freeze_expr: a detector setting"),
        ("train.moving_average_decay=0.99", "train.moving_average_decay: the classifier"),
        ("train.warmup_epochs=20", "train.warmup_epochs: 20"),
        ("model.image_size=16", "model.image_size: 16: classifiers take 32 px or more"),
        ("evaluate.metric=AP", "evaluate.metric: 'AP'"),
        ("model.name=efficientdet_lite0", "model.name: 'efficientdet_lite0'"),
        ("model.uri=imagenet", "model.uri: no offline ImageNet weights for 'mobilenet-v2'"),
    ],
)  # fmt: skip
def test_classification_settings_a_classifier_cannot_honour_are_refused(override, key):
    overrides = ["model.task=image_classification", override]
    if override == "model.uri=imagenet":
        overrides.append("model.name=mobilenet_v2")
    with pytest.raises(UsageError) as info:
        load_config(overrides=overrides)
    assert key in str(info.value), str(info.value)


def test_imagenet_uri_for_classifiers_with_offline_weights():
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        config = load_config(
            overrides=[
                "model.task=image_classification",
                f"model.name={name}",
                "model.uri=imagenet",
            ]
        )
        assert config.model.offline_backbone() == name.replace("_", "-")
    with pytest.raises(SettingsError, match="model.uri: no offline ImageNet weights"):
        load_config(
            overrides=[
                "model.task=image_classification",
                "model.name=efficientnet_lite3",
                "model.uri=imagenet",
            ]
        )


def test_imagenet_uri_only_for_models_with_offline_weights():
    assert load_config(overrides=["model.uri=imagenet"]).model.uri == "imagenet"
    with pytest.raises(SettingsError, match="model.uri: no offline ImageNet weights"):
        load_config(overrides=["model.uri=imagenet", "model.name=efficientdet_lite3"])


# --- every setting, walked: the config rejects what a stage would reject ---------------

#: Invalid values of every numeric or constrained setting (section, field, value).
#: NaN and infinity are added for every float, a wrong type for every int and bool.
INVALID = [
    ("data", "format", "folders"),
    ("data", "num_shards", -1),
    ("data", "split_ratios", {"train": 0.9, "eval": 0.2}),
    ("data", "split_ratios", {"train": 1.5}),
    ("data", "split_ratios", {"my split": 1.0}),
    ("data", "split_ratios", {}),
    ("data", "split_ratios", {"train": math.nan}),
    ("data", "split_files", {"bad/name": "x.json"}),
    ("data", "split_image_dirs", {"train": "imgs"}),
    ("data", "output", "/tmp/examples"),
    ("model", "task", "segmentation"),
    ("model", "name", "efficientdet_lite9"),
    ("model", "image_size", -64),
    ("model", "image_size", 100),
    ("model", "image_size", 64000),  # a multiple of 64, but no device runs such a model
    ("model", "image_size", 2048 + 64),
    ("model", "uri", "pretrained://efficientnet-lite1"),
    ("model", "hparams", "bogus_key=1"),
    ("model", "hparams", "learning_rate=0.1"),
    ("model", "hparams", "jitter_min=2.0"),
    ("model", "hparams", "fpn_num_filters=abc"),
    ("model", "hparams", {"alpha": math.inf}),
    ("train", "epochs", 0),
    ("train", "batch_size", 0),
    ("train", "learning_rate", 0.0),
    ("train", "learning_rate", -0.1),
    ("train", "warmup_epochs", -1.0),
    ("train", "moving_average_decay", 1.0),
    ("train", "moving_average_decay", -0.1),
    ("train", "var_freeze_expr", "(unclosed"),
    ("train", "steps_per_execution", 0),
    ("train", "strategy", "multiworker"),
    ("qat", "learning_rate", 0.0),
    ("qat", "batch_size", 0),
    ("qat", "epochs", 0),
    ("qat", "decay_steps", 0),
    ("qat", "decay_rate", 0.0),
    ("qat", "decay_rate", 1.5),
    ("qat", "strategy", "multiworker"),
    ("qat", "mode", "sometimes"),
    ("qat", "auto_float_layers", [10, 5]),
    ("qat", "auto_float_layers", [0]),
    ("postprocess", "max_detections", 0),
    ("postprocess", "score_threshold", 1.5),
    ("postprocess", "score_threshold", -0.1),
    ("postprocess", "iou_threshold", 1.01),
    ("postprocess", "pre_nms_top_k", -1),
    ("convert", "variants", []),
    ("convert", "variants", ["float32", "float32"]),
    ("convert", "variants", ["int4"]),
    ("convert", "int8_input_type", "int16"),
    ("convert", "representative_samples", 0),
    ("convert", "layer_error_samples", -1),
    ("convert", "mixed_float_layers", -1),
    ("convert", "mixed_float_patterns", ["stem", "c["]),
    ("convert", "mixed_float_patterns", [""]),
    ("convert.metadata", "name", "bad\x00name"),
    ("convert.metadata", "description", "\x00"),
    ("convert.metadata", "version", "1\x00"),
    ("convert.metadata", "author", "\x00"),
    ("convert.metadata", "license", "\x00"),
    ("evaluate", "candidate", "dynamic_range"),
    ("evaluate", "metric", "mAP"),
    ("evaluate", "metric", "top1"),
    ("evaluate", "max_drop", -1.0),
    ("evaluate", "max_drop", 101.0),
    ("evaluate", "baseline", "float16"),
    ("evaluate", "latency_runs", -1),
    ("evaluate", "split", "my eval"),
    ("runner", "kind", "airflow"),
    ("runner", "pipeline_root", ""),
    ("runner", "direct_num_workers", -1),
    ("kubeflow", "accelerator_count", -1),
    ("kubeflow", "trainer_cpu", -1.0),
    ("kubeflow", "trainer_memory_gib", -1.0),
    ("kubeflow", "cpu", -1.0),
    ("kubeflow", "memory_gib", -1.0),
    ("kubeflow", "cpu_image", ""),
    ("kubeflow", "gpu_image", ""),
    ("kubeflow", "trainer_workers", 0),
    ("kubeflow", "trainer_machine_type", "N1 standard"),
    ("kubeflow", "vertex_project", "My Project"),
    ("kubeflow", "vertex_region", "US Central"),
]
#: Settings any value of their type suits (paths, names, switches, free lists).
UNCONSTRAINED = {
    ("data", "input"),
    ("data", "annotations"),
    ("data", "strict"),
    ("data", "keep_negatives"),
    ("data", "rewrite_tfrecords"),
    ("train", "seed"),
    ("qat", "enabled"),
    ("convert", "with_nms"),
    ("convert.metadata", "enabled"),
    ("push", "destination"),
    ("runner", "beam_pipeline_args"),
    ("runner", "enable_cache"),
    ("kubeflow", "pipeline_root"),
    ("kubeflow", "data_input"),
    ("kubeflow", "data_annotations"),
    ("kubeflow", "push_destination"),
    ("kubeflow", "accelerator_type"),
    ("kubeflow", "beam_pipeline_args"),
}


def _settings(cls=PipelineConfig, prefix=""):
    """(dotted section, field, type) of every leaf setting, nested sections walked."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(tp):
            yield from _settings(tp, path)
        elif prefix:
            yield prefix, f.name, tp


def _nested(section, name, value):
    out = {name: value}
    for part in reversed(section.split(".")):
        out = {part: out}
    return out


def _generated_invalid():
    out = []
    for section, name, tp in _settings():
        if tp is float:
            out += [
                (section, name, math.nan),
                (section, name, math.inf),
                (section, name, -math.inf),
            ]
        elif tp is int:
            out.append((section, name, "many"))
        elif tp is bool:
            out.append((section, name, "maybe"))
    return out


def _ids(case):
    section, name, value = case
    return f"{section}.{name}={value!r}"


@pytest.mark.parametrize("case", INVALID + _generated_invalid(), ids=_ids)
def test_every_invalid_setting_is_rejected_naming_its_key(case):
    section, name, value = case
    with pytest.raises(UsageError) as info:
        load_config(base=_nested(section, name, value))
    message = str(info.value)
    assert "\n" not in message
    assert f"{section}.{name}" in message or f"{section}.hparams" in message, message


def test_the_table_covers_every_setting():
    covered = {(s, n) for s, n, _ in INVALID + _generated_invalid()} | UNCONSTRAINED
    every = {(s, n) for s, n, _ in _settings()}
    assert every - covered == set(), "give each new setting an invalid value or list it as free"
    assert covered - every == set()


#: Valid configs: the shipped ones and edges of every range.
VALID = [
    {},
    {"train": {"moving_average_decay": 0.999, "warmup_epochs": 0.0, "var_freeze_expr": ""}},
    {"qat": {"decay_rate": 1.0, "learning_rate": 1e-6}},
    {"postprocess": {"score_threshold": 0.0, "iou_threshold": 1.0, "max_detections": 1}},
    {"model": {"image_size": 64, "hparams": {"alpha": 0.5, "fpn_num_filters": 32}}},
    {"model": {"image_size": 2048}},
    {"model": {"name": "efficientdet_lite2", "uri": "imagenet"}},
    {
        "convert": {"variants": ["float16"], "with_nms": False},
        "qat": {"enabled": False},
        "evaluate": {"candidate": "float16", "baseline": "keras_float", "latency_runs": 0},
    },
    {"data": {"format": "folder", "split_ratios": {"train": 1.0}}},
    {
        "qat": {"mode": "auto", "auto_float_layers": [3, 30]},
        "convert": {
            "variants": ["float32", "ptq_int8", "ptq_mixed", "qat_int8"],
            "mixed_float_patterns": ["stem", "resample_p6"],
            "layer_error_samples": 1,
            "mixed_float_layers": 0,
        },
    },
    {"data": {"format": "voc", "split_files": {"train": "t.txt", "val": "v.txt"}}},
]


@pytest.mark.parametrize("values", VALID, ids=range(len(VALID)))
def test_no_stage_rejects_a_config_that_passed(values, tmp_path):
    from model_maker.core.data.options import IngestOptions
    from model_maker.core.evaluation import EvaluateOptions
    from model_maker.core.qat_hparams import QATHParams
    from model_maker.object_detector.options import TFLiteSetOptions, TrainerOptions
    from model_maker.object_detector.trainer import build_spec
    from model_maker.tasks import AccuracyCheck

    config = load_config(base=values)
    stages = config.stages()
    assert isinstance(stages, StageOptions)
    # What each executor rebuilds from its JSON property equals what the config built.
    for cls, options in [
        (IngestOptions, stages.ingest),
        (TrainerOptions, stages.trainer),
        (QATHParams, stages.qat),
        (TFLiteSetOptions, stages.converter),
        (EvaluateOptions, stages.evaluator),
    ]:
        assert from_json(cls, to_json(options)) == options
    # The spec the Trainer builds accepts the model and train settings.
    spec = build_spec(stages.trainer, {1: "a", 2: "b"}, str(tmp_path))
    assert spec.hparams["learning_rate"] == config.train.learning_rate
    assert spec.batch_size == config.train.batch_size
    assert QATHParams(**{k: v for k, v in dataclasses.asdict(stages.qat).items()}) == stages.qat
    if config.qat.mode == "auto":
        assert from_json(AccuracyCheck, to_json(stages.qat_check)) == stages.qat_check
        assert stages.qat_check.rule == stages.evaluator
        assert stages.qat_check.converter == stages.converter
    else:
        assert stages.qat_check is None


def test_auto_qat_needs_ptq_int8_to_bless_and_ptq_mixed_needs_layer_errors():
    with pytest.raises(SettingsError, match="qat.mode: auto blesses ptq_int8 when QAT is skipped"):
        load_config(
            base={"qat": {"mode": "auto"}, "convert": {"variants": ["float32", "qat_int8"]}}
        )
    with pytest.raises(SettingsError, match="convert.layer_error_samples: ptq_mixed picks"):
        load_config(
            base={"convert": {"variants": ["ptq_int8", "ptq_mixed"], "layer_error_samples": 0}}
        )


def test_learning_rate_is_the_peak_at_the_batch_size(tmp_path):
    from model_maker.object_detector.trainer import build_spec

    config = load_config(base={"train": {"learning_rate": 0.02, "batch_size": 4}})
    spec = build_spec(config.stages().trainer, {1: "a"}, str(tmp_path))
    assert spec.hparams["learning_rate"] == 0.02


# --- issue 17: YAML alias bombs ("billion laughs") ---------------------------------


def alias_bomb(indent: str = "", flow: bool = False) -> str:
    """Nine levels of nine aliases of the level below: ~550 bytes that expand to 9**9 leaves."""
    items = [("a0", ", ".join(["x"] * 9))]
    items += [(f"a{i}", ", ".join([f"*a{i - 1}"] * 9)) for i in range(1, 9)]
    if flow:
        return "{" + ", ".join(f"{name}: &{name} [{body}]" for name, body in items) + "}"
    return "".join(f"{indent}{name}: &{name} [{body}]\n" for name, body in items)


#: Loads a config in a fresh process, so a hang is a timeout rather than a stuck suite.
_LOAD_CONFIG = """
import sys
from model_maker.core.errors import UsageError
from pipeline.config import load_config
path, overrides = (None, sys.argv[2:]) if sys.argv[1] == "--set" else (sys.argv[1], ())
try:
    load_config(path, overrides)
except UsageError as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def _load_in_subprocess(*args):
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_CONFIG, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,  # refused at once when fixed; the unbounded expansion runs for minutes
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(
    "text, line",
    [
        ("model:\n  hparams:\n" + alias_bomb("    "), 3),
        ("train:\n  epochs: 3\ndata:\n  split_ratios:\n" + alias_bomb("    "), 5),
        ("train: &t\n  epochs: 3\n", 1),  # an anchor alone is refused too: none is needed
    ],
    ids=["model.hparams", "data.split_ratios", "plain anchor"],
)
def test_yaml_anchors_and_aliases_in_a_config_file_are_refused_at_once(tmp_path, text, line):
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    out = _load_in_subprocess(path)
    assert out.startswith(f"ConfigError: {path}:{line}:"), out
    assert "alias" in out and "\n" not in out


def test_yaml_alias_bomb_in_an_hparams_file_is_refused_at_once(tmp_path):
    hp = tmp_path / "hp.yaml"
    hp.write_text(alias_bomb())
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  hparams: {hp}\n")
    out = _load_in_subprocess(path)
    assert out.startswith("SettingsError: model.hparams:"), out
    assert f"{hp}:1:" in out and "alias" in out and "\n" not in out


def test_yaml_alias_bomb_in_a_set_override_is_refused_at_once():
    out = _load_in_subprocess("--set", f"model.hparams={alias_bomb(flow=True)}")
    assert out.startswith("SettingsError: model.hparams:"), out
    assert "\n" not in out


@pytest.mark.parametrize("size", [2049, 64000])
def test_a_classifier_image_size_is_bounded_too(size):
    model = {"task": "image_classification", "name": "mobilenet_v2"}
    assert load_config(base={"model": {**model, "image_size": 2048}}).model.image_size == 2048
    with pytest.raises(SettingsError, match=rf"^model\.image_size: {size} must be in \[0, 2048\]"):
        load_config(base={"model": {**model, "image_size": size}})
