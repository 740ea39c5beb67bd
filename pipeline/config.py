"""Typed configuration of the whole pipeline.

Defaults live in the dataclasses below (one ``Attributes:`` line per field);
a YAML file overrides them, ``--set key.sub=value`` overrides the YAML, then
everything is validated and the resolved config is written beside the run's
outputs (``config.yaml``). Unknown keys are errors that suggest the nearest
valid key; invalid values name the key and the allowed values.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from model_maker.core.hparams import HParamsError, parse_hparams, parse_scalar, suggest
from model_maker.object_detector.pretrained_cache import check_offline, is_imagenet_uri


class ConfigError(ValueError):
    """A configuration that cannot be loaded or does not validate."""


DATA_FORMATS = ("coco", "voc", "tfrecord", "folder")
TASKS = ("object_detection", "image_classification")
DETECTOR_MODELS = tuple(f"efficientdet_lite{i}" for i in range(5))
CLASSIFIER_MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet50")
TFLITE_VARIANTS = ("float32", "float16", "dynamic_range", "ptq_int8", "qat_int8")
INT8_INPUT_TYPES = ("float32", "uint8")
RUNNERS = ("beam", "local")
BLESSING_METRICS = ("AP", "AP50", "AP75", "top1")


@dataclass
class SplitConfig:
    """How images are assigned to splits.

    Attributes:
      ratios: split name -> fraction, used when no split files are given; the
        assignment hashes each image's file name, so it is the same on every
        machine and for any number of workers.
      files: split name -> file (COCO JSON per split, or a VOC list of ids);
        when set, ``ratios`` is ignored.
      image_dirs: split name -> image folder, for COCO split files whose
        images live in one folder per split (COCO 2017's train2017/ and
        val2017/); a split not listed here reads its images from ``input``.
    """

    ratios: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.2})
    files: dict[str, str] = field(default_factory=dict)
    image_dirs: dict[str, str] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the labelled images come from and how they are ingested.

    Attributes:
      format: one of coco, voc, tfrecord, folder.
      input: image folder (coco), dataset folder with annotations/ and images/
        (voc), TFRecord folder (tfrecord) or class-per-folder root (folder).
      annotations: COCO instances JSON (coco format only).
      split: split ratios or split files.
      strict: turn every repair (clipped box, converted image) or skip into an error.
      keep_negatives: keep images without boxes as negative examples.
      num_shards: TFRecord shards per split (0 lets Beam decide).
    """

    format: str = "coco"
    input: str = ""
    annotations: str = ""
    split: SplitConfig = field(default_factory=SplitConfig)
    strict: bool = False
    keep_negatives: bool = True
    num_shards: int = 0


@dataclass
class ModelConfig:
    """Which model is trained.

    Attributes:
      task: object_detection or image_classification.
      name: efficientdet_lite0..4 (detection) or a classifier name.
      uri: pretrained weights. "imagenet" loads the offline ImageNet
        EfficientNet-Lite backbone (Lite0..2 only; run `make pretrained` once,
        cache in $QATFLOW_PRETRAINED_DIR or ~/.cache/qatflow/pretrained); a TF
        Hub handle, SavedModel or trained-model folder loads those weights;
        empty trains from random initialisation.
      hparams: model hyper-parameter overrides: a mapping, a "k=v,k2=v2" string
        or a YAML file path (the three forms of the Model Maker API).
      image_size: input size in pixels; 0 uses the model's published size.
      tflite_max_detections: detections kept by the TFLite post-processing op.
    """

    task: str = "object_detection"
    name: str = "efficientdet_lite0"
    uri: str = ""
    hparams: Any = field(default_factory=dict)
    image_size: int = 0
    tflite_max_detections: int = 25


@dataclass
class TrainConfig:
    """Float training.

    Attributes:
      epochs: training epochs.
      batch_size: images per step.
      learning_rate: peak learning rate for batch_size (after warm-up).
      warmup_epochs: linear warm-up length in epochs.
      moving_average_decay: EMA decay of weights; 0 disables EMA.
      var_freeze_expr: regex of variable names kept frozen ("" trains all).
      steps_per_execution: steps per tf.function call.
      seed: random seed (tf_random_seed of the Model Maker API).
    """

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 0.08
    warmup_epochs: float = 1.0
    moving_average_decay: float = 0.0
    var_freeze_expr: str = "(efficientnet|fpn_cells|resample_p6)"
    steps_per_execution: int = 1
    seed: int = 111111


@dataclass
class QATConfig:
    """Quantization-aware fine-tuning (QATHParams of the Model Maker API).

    Attributes:
      enabled: run the QATTrainer.
      learning_rate: initial learning rate of the exponential decay.
      batch_size: images per step.
      epochs: fine-tuning epochs.
      decay_steps: steps per decay period.
      decay_rate: multiplicative decay per period.
    """

    enabled: bool = True
    learning_rate: float = 0.03
    batch_size: int = 32
    epochs: int = 10
    decay_steps: int = 231
    decay_rate: float = 0.96


@dataclass
class ConvertConfig:
    """TFLite conversion.

    Attributes:
      variants: TFLite variants to write (float32, float16, dynamic_range,
        ptq_int8, qat_int8).
      representative_samples: train images used to calibrate ptq_int8.
      int8_input_type: input tensor type of the int8 variants (float32 or uint8).
      score_threshold: minimum score kept by the post-processing op.
      iou_threshold: IoU threshold of non-max suppression.
      with_nms: put TFLite_Detection_PostProcess in the model; false writes raw
        box encodings and scores plus an anchors file (for GPU delegates).
    """

    variants: list[str] = field(default_factory=lambda: ["float32", "ptq_int8", "qat_int8"])
    representative_samples: int = 100
    int8_input_type: str = "uint8"
    score_threshold: float = 1e-8
    iou_threshold: float = 0.5
    with_nms: bool = True


@dataclass
class EvaluateConfig:
    """Evaluation of every variant and the blessing rule.

    Attributes:
      candidate: the variant that is blessed and pushed.
      metric: metric compared against the float model.
      max_ap_drop: largest drop of the metric from float, in points (0-100).
      latency_runs: timed invocations per variant for the latency figures.
    """

    candidate: str = "qat_int8"
    metric: str = "AP"
    max_ap_drop: float = 1.0
    latency_runs: int = 20


@dataclass
class PushConfig:
    """Where the blessed model goes.

    Attributes:
      destination: local folder or tf.io.gfile URL (gs://...); empty uses
        <pipeline_root>/serving.
    """

    destination: str = ""


@dataclass
class RunnerConfig:
    """Orchestration.

    Attributes:
      kind: beam (BeamDagRunner) or local (LocalDagRunner).
      pipeline_root: folder (or URL) for artifacts, metadata and logs.
      direct_num_workers: Beam DirectRunner worker processes (0 = one per core).
      beam_pipeline_args: extra Beam arguments passed through unchanged.
      enable_cache: reuse outputs of components whose inputs did not change.
    """

    kind: str = "beam"
    pipeline_root: str = "runs"
    direct_num_workers: int = 2
    beam_pipeline_args: list[str] = field(default_factory=list)
    enable_cache: bool = True


@dataclass
class KubeflowConfig:
    """Kubeflow Pipelines compilation (``qatflow compile`` / ``qatflow submit``).

    Attributes:
      pipeline_root: artifact root the cluster can reach (e.g. gs://bucket/qatflow);
        empty uses runner.pipeline_root.
      data_input: dataset location as the cluster sees it; empty uses data.input.
      data_annotations: COCO JSON as the cluster sees it; empty uses data.annotations.
      push_destination: push destination as the cluster sees it; empty uses push.destination.
      cpu_image: image for ExampleGen, TFLiteConverter, Evaluator and Pusher.
      gpu_image: image for the Trainer and the QATTrainer.
      accelerator_type: accelerator of the trainers (e.g. NVIDIA_TESLA_T4, TPU_V3); empty for none.
      accelerator_count: accelerators per trainer.
      trainer_cpu: vCPUs requested by each trainer (0 leaves it unset).
      trainer_memory_gib: memory requested by each trainer in GiB (0 leaves it unset).
      cpu: vCPUs requested by the other components (0 leaves it unset).
      memory_gib: memory requested by the other components in GiB (0 leaves it unset).
      beam_pipeline_args: Beam arguments of the data-parallel components on the
        cluster (e.g. --runner=DataflowRunner ...); empty runs Beam in the pod.
    """

    pipeline_root: str = ""
    data_input: str = ""
    data_annotations: str = ""
    push_destination: str = ""
    cpu_image: str = "qatflow-cpu:0.1.0"
    gpu_image: str = "qatflow-gpu:0.1.0"
    accelerator_type: str = "NVIDIA_TESLA_T4"
    accelerator_count: int = 1
    trainer_cpu: float = 4.0
    trainer_memory_gib: float = 16.0
    cpu: float = 2.0
    memory_gib: float = 8.0
    beam_pipeline_args: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    """The whole pipeline.

    Attributes:
      name: pipeline name (ML Metadata context and Kubeflow pipeline name).
    """

    name: str = "qatflow"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    push: PushConfig = field(default_factory=PushConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)


# ---------------------------------------------------------------------------
# Building dataclasses from plain data, strictly.


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints widen to float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, Sequence):
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a {tp}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key {prefix + key!r}{suggest(key, names)} "
                f"(valid keys under {prefix.rstrip('.') or 'the top level'}: {', '.join(names)})"
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    # Nested dataclasses given partially keep the defaults of what is not given.
    obj = cls()
    for key, value in kwargs.items():
        setattr(obj, key, value)
    return obj


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data (YAML-ready)."""
    return dataclasses.asdict(config)


def _load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(loaded).__name__}")
    return dict(loaded)


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"train.epochs=3"`` into ``{"train": {"epochs": 3}}``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parse_scalar(value)
    return out


def load_config(
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Defaults <- ``base`` <- YAML ``path`` <- ``overrides``, then validate."""
    values: dict[str, Any] = dict(base or {})
    if path:
        values = _merge(values, _load_yaml(path))
    for text in overrides:
        values = _merge(values, parse_override(text))
    config = _build(PipelineConfig, values)
    validate(config)
    return config


def _check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{key}: {value!r} is not allowed{suggest(str(value), allowed)} "
            f"(allowed: {', '.join(allowed)})"
        )


def offline_backbone(model: ModelConfig) -> str:
    """The offline ImageNet backbone ``model.uri`` loads (``efficientnet-liteN``), or "".

    Raises:
      ValueError: the uri asks for ImageNet weights the model's backbone has none of.
    """
    if model.task != "object_detection" or not is_imagenet_uri(model.uri):
        return ""
    return check_offline(model.name.replace("efficientdet", "efficientnet"))


def _check_range(key: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{key}: {value!r} must be {bound}")


def validate(config: PipelineConfig) -> None:
    """Raise ``ConfigError`` naming the key and the allowed values of the first bad value."""
    _check_choice("data.format", config.data.format, DATA_FORMATS)
    if config.data.format == "coco" and config.data.input and not config.data.annotations:
        if not config.data.split.files:
            raise ConfigError("data.annotations: the coco format needs a COCO JSON file")
    ratios = config.data.split.ratios
    if not config.data.split.files:
        if not ratios:
            raise ConfigError("data.split.ratios: give at least one split")
        for name, ratio in ratios.items():
            _check_range(f"data.split.ratios.{name}", ratio, 0.0, 1.0)
        if abs(sum(ratios.values()) - 1.0) > 1e-6:
            raise ConfigError(
                f"data.split.ratios: fractions must sum to 1, got {sum(ratios.values()):g}"
            )
    image_dirs = config.data.split.image_dirs
    if image_dirs:
        if config.data.format != "coco":
            raise ConfigError("data.split.image_dirs: only the coco format takes image folders")
        unknown = sorted(set(image_dirs) - set(config.data.split.files))
        if unknown:
            raise ConfigError(
                f"data.split.image_dirs: {unknown} have no COCO JSON in data.split.files "
                f"(splits there: {sorted(config.data.split.files) or 'none'})"
            )
    _check_range("data.num_shards", config.data.num_shards, 0)

    _check_choice("model.task", config.model.task, TASKS)
    names = DETECTOR_MODELS if config.model.task == "object_detection" else CLASSIFIER_MODELS
    _check_choice("model.name", config.model.name, names)
    try:
        # Normalised to a mapping so the resolved config records the values, not a path.
        config.model.hparams = parse_hparams(config.model.hparams)
    except HParamsError as exc:
        raise ConfigError(f"model.hparams: {exc}") from None
    if config.model.image_size:
        if config.model.task == "object_detection" and config.model.image_size % 64:
            # Levels 6 and 7 round odd sizes up (320 -> 5, 3), as the published
            # 320/384/448/512/640 need; smaller steps were never tested.
            raise ConfigError(
                f"model.image_size: {config.model.image_size} must be a multiple of 64 "
                "(the published sizes are 320, 384, 448, 512, 640), or 0 for the model's "
                "own size"
            )
    _check_range("model.image_size", config.model.image_size, 0)
    try:
        offline_backbone(config.model)
    except ValueError as exc:
        raise ConfigError(f"model.uri: {exc}") from None
    _check_range("model.tflite_max_detections", config.model.tflite_max_detections, 1)

    _check_range("train.epochs", config.train.epochs, 1)
    _check_range("train.batch_size", config.train.batch_size, 1)
    _check_range("train.learning_rate", config.train.learning_rate, 0.0)
    _check_range("train.warmup_epochs", config.train.warmup_epochs, 0.0)
    _check_range("train.moving_average_decay", config.train.moving_average_decay, 0.0, 1.0)
    _check_range("train.steps_per_execution", config.train.steps_per_execution, 1)

    _check_range("qat.epochs", config.qat.epochs, 1)
    _check_range("qat.batch_size", config.qat.batch_size, 1)
    _check_range("qat.learning_rate", config.qat.learning_rate, 0.0)
    _check_range("qat.decay_steps", config.qat.decay_steps, 1)
    _check_range("qat.decay_rate", config.qat.decay_rate, 0.0, 1.0)

    if not config.convert.variants:
        raise ConfigError(f"convert.variants: give at least one of {', '.join(TFLITE_VARIANTS)}")
    for i, variant in enumerate(config.convert.variants):
        _check_choice(f"convert.variants[{i}]", variant, TFLITE_VARIANTS)
    if "qat_int8" in config.convert.variants and not config.qat.enabled:
        raise ConfigError("convert.variants: qat_int8 needs qat.enabled: true")
    _check_range("convert.representative_samples", config.convert.representative_samples, 1)
    _check_choice("convert.int8_input_type", config.convert.int8_input_type, INT8_INPUT_TYPES)
    _check_range("convert.score_threshold", config.convert.score_threshold, 0.0, 1.0)
    _check_range("convert.iou_threshold", config.convert.iou_threshold, 0.0, 1.0)

    _check_choice("evaluate.candidate", config.evaluate.candidate, config.convert.variants)
    _check_choice("evaluate.metric", config.evaluate.metric, BLESSING_METRICS)
    _check_range("evaluate.max_ap_drop", config.evaluate.max_ap_drop, 0.0)
    _check_range("evaluate.latency_runs", config.evaluate.latency_runs, 1)

    _check_choice("runner.kind", config.runner.kind, RUNNERS)
    _check_range("runner.direct_num_workers", config.runner.direct_num_workers, 0)
    if not config.runner.pipeline_root:
        raise ConfigError("runner.pipeline_root: must not be empty")

    kf = config.kubeflow
    _check_range("kubeflow.accelerator_count", kf.accelerator_count, 0)
    for key in ("trainer_cpu", "trainer_memory_gib", "cpu", "memory_gib"):
        _check_range(f"kubeflow.{key}", getattr(kf, key), 0.0)
    for key in ("cpu_image", "gpu_image"):
        if not getattr(kf, key):
            raise ConfigError(f"kubeflow.{key}: must name a container image")


def dump_yaml(config: PipelineConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def write_resolved(config: PipelineConfig, directory: str | os.PathLike) -> str:
    """Write ``config.yaml`` into ``directory`` (created if missing); return its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(os.fspath(directory), "config.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dump_yaml(config))
    return path
