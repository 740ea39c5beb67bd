"""Typed configuration of the whole pipeline.

Each section is the library's own settings class (``data`` is
``IngestOptions``, ``train`` is ``TrainOptions``, ...): a setting, its default,
its unit and its rule are written once, there. Defaults (the task's:
:func:`task_defaults`) <- a YAML file <- ``--set key.sub=value``; building
the config validates every section and every stage's options
(:meth:`PipelineConfig.stages`), so ``qatflow config``, ``run`` and
``compile`` reject, before any work and naming the key, anything a
stage would reject. Unknown keys are errors that suggest the nearest valid
key. The resolved config is written beside the run's outputs (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from model_maker.core.convert_options import ConvertOptions
from model_maker.core.data.options import IngestOptions
from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import SettingsError, UsageError
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.hparams import load_yaml, parse_scalar, yaml_error_line
from model_maker.core.options import (
    IMAGE_CLASSIFICATION,
    OBJECT_DETECTION,
    ModelOptions,
    TrainOptions,
)
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import Settings, build, check_choice, check_name, check_range
from model_maker.core.settings import to_dict as settings_to_dict
from model_maker.image_classifier.options import ClassifierTrainerOptions
from model_maker.object_detector.options import TFLiteSetOptions, TrainerOptions
from model_maker.tasks import AccuracyCheck, check_float_layer_ladder


class ConfigError(UsageError):
    """A configuration file that cannot be read (settings errors are ``SettingsError``)."""


RUNNERS = ("beam", "local")
QAT_MODES = ("always", "auto")
#: Metrics a blessing may compare, per task.
BLESSING_METRICS = {
    OBJECT_DETECTION: ("AP", "AP50", "AP75"),
    IMAGE_CLASSIFICATION: ("top1", "top5"),
}


@dataclass(frozen=True)
class QATConfig(QATHParams):
    """Quantization-aware fine-tuning: the ``QATHParams`` of the Model Maker API, and a switch.

    Attributes:
      enabled: run the QATTrainer.
      mode: ``always`` runs QAT; ``auto`` first converts ``ptq_int8`` and scores it
        with the ``evaluate`` rule (metric, max_drop, baseline, split), and runs QAT
        only when PTQ misses it; when skipped, no ``qat_int8`` is written and the
        Evaluator blesses ``ptq_int8`` (the decision is in ``qat_decision.json``, ML
        Metadata and the report).
      auto_float_layers: ``auto`` when QAT misses the rule too (its fake-quant
        metric): ``ptq_mixed`` files with these many float layers are tried in
        order, and the first within the rule is blessed instead; empty tries none.
    """

    enabled: bool = True
    mode: str = "always"
    auto_float_layers: tuple[int, ...] = (5, 10, 20)

    def __post_init__(self) -> None:
        object.__setattr__(self, "auto_float_layers", tuple(self.auto_float_layers))
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check_choice("mode", self.mode, QAT_MODES)
        check_float_layer_ladder("auto_float_layers", self.auto_float_layers)

    def hparams(self) -> QATHParams:
        """The ``QATHParams`` part (what the QATTrainer takes)."""
        names = [f.name for f in dataclasses.fields(QATHParams)]
        return QATHParams(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class PushConfig(Settings):
    """Where the blessed model goes.

    Attributes:
      destination: local folder or tf.io.gfile URL (gs://...); empty uses
        <pipeline_root>/serving.
    """

    destination: str = ""


@dataclass(frozen=True)
class RunnerConfig(Settings):
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
    beam_pipeline_args: tuple[str, ...] = ()
    enable_cache: bool = True

    def validate(self) -> None:
        check_choice("kind", self.kind, RUNNERS)
        check_range("direct_num_workers", self.direct_num_workers, 0)
        if not self.pipeline_root:
            raise SettingsError("pipeline_root", "must not be empty")


@dataclass(frozen=True)
class KubeflowConfig(Settings):
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
      trainer_workers: processes that train each trainer (Trainer, QATTrainer)
        together. 1 trains in the trainer's own pod (gpu_image, accelerator_type x
        accelerator_count). More runs each trainer as a Vertex AI CustomJob (TFX's
        Vertex training client): one chief and trainer_workers - 1 workers, each a
        trainer_machine_type machine with accelerator_type x accelerator_count,
        running gpu_image with the ``multi_worker`` strategy (``train.strategy``,
        ``qat.strategy``; Vertex sets TF_CONFIG on every replica); the trainer's
        pod then only submits and waits (cpu_image, cpu/memory_gib).
        ``train.batch_size`` and ``qat.batch_size`` stay the global batches, split
        over every GPU of every worker.
      trainer_machine_type: Vertex AI machine type of each trainer worker
        (e.g. n1-standard-8 for T4/V100/P100, a2-highgpu-1g for one A100, g2-standard-8
        for one L4); used when trainer_workers > 1.
      vertex_project: Google Cloud project of the Vertex AI training job (needed when
        trainer_workers > 1).
      vertex_region: Vertex AI region of the training job, e.g. us-central1 (needed
        when trainer_workers > 1).
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
    beam_pipeline_args: tuple[str, ...] = ()
    trainer_workers: int = 1
    trainer_machine_type: str = "n1-standard-8"
    vertex_project: str = ""
    vertex_region: str = ""

    def validate(self) -> None:
        check_range("accelerator_count", self.accelerator_count, 0)
        for key in ("trainer_cpu", "trainer_memory_gib", "cpu", "memory_gib"):
            check_range(key, getattr(self, key), 0.0)
        for key in ("cpu_image", "gpu_image"):
            if not getattr(self, key):
                raise SettingsError(key, "must name a container image")
        check_range("trainer_workers", self.trainer_workers, 1)
        for key, pattern, example in _VERTEX_NAMES:
            value = getattr(self, key)
            if value and not re.fullmatch(pattern, value):
                raise SettingsError(key, f"{value!r} is not a Vertex AI {example}")
        if self.trainer_workers > 1:
            for key in ("vertex_project", "vertex_region", "trainer_machine_type"):
                if not getattr(self, key):
                    raise SettingsError(
                        key,
                        f"trainer_workers {self.trainer_workers} trains on Vertex AI "
                        f"worker pools, which need {key}",
                    )
            if self.accelerator_type.startswith("TPU") and self.accelerator_count:
                raise SettingsError(
                    "accelerator_type",
                    f"{self.accelerator_type}: trainer_workers > 1 trains with "
                    "multi_worker (MultiWorkerMirroredStrategy) on GPU or CPU machines; "
                    "train on one TPU with trainer_workers 1 and train.strategy tpu",
                )

    def trainer_gpus(self) -> int:
        """GPUs of each Trainer worker (0 without an accelerator)."""
        return self.accelerator_count if self.accelerator_type else 0


#: (KubeflowConfig key, pattern, what it names): checked when set.
_VERTEX_NAMES = (
    ("trainer_machine_type", r"[a-z][a-z0-9]*(-[a-z0-9]+)+", "machine type (e.g. n1-standard-8)"),
    # A project ID (6-30 lowercase letters, digits, hyphens) or a project number.
    ("vertex_project", r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]+", "project ID (e.g. my-project)"),
    ("vertex_region", r"[a-z]+-[a-z]+[0-9]+", "region (e.g. us-central1)"),
)


@dataclass(frozen=True)
class PipelineConfig(Settings):
    """The whole pipeline: one section per stage, each the library's own settings class.

    Attributes:
      name: pipeline name (ML Metadata context and Kubeflow pipeline name).
      data: ExampleGen (:class:`~model_maker.core.data.options.IngestOptions`).
      model: which model (:class:`~model_maker.core.options.ModelOptions`).
      train: float training (:class:`~model_maker.core.options.TrainOptions`).
      qat: QAT fine-tuning (:class:`QATConfig`: ``QATHParams`` + ``enabled``).
      postprocess: detection post-processing of every exported model and of the
        float baseline (:class:`~model_maker.core.detection_postprocess.NMSOptions`).
      convert: TFLite variants (:class:`~model_maker.core.quantization.ConvertOptions`).
      evaluate: evaluation and blessing (:class:`~model_maker.core.evaluation.EvaluateOptions`).
      push: where the blessed model goes.
      runner: local orchestration.
      kubeflow: Kubeflow Pipelines compilation.
    """

    name: str = "qatflow"
    data: IngestOptions = IngestOptions()
    model: ModelOptions = ModelOptions()
    train: TrainOptions = TrainOptions()
    qat: QATConfig = QATConfig()
    postprocess: NMSOptions = NMSOptions()
    convert: ConvertOptions = ConvertOptions()
    evaluate: EvaluateOptions = EvaluateOptions()
    push: PushConfig = PushConfig()
    runner: RunnerConfig = RunnerConfig()
    kubeflow: KubeflowConfig = KubeflowConfig()

    def validate(self) -> None:
        """The rules that span sections; each section checked its own on construction."""
        check_name("name", self.name)
        if self.data.output:
            raise SettingsError(
                "data.output", "the pipeline writes the Examples artifact; leave it empty"
            )
        if "qat_int8" in self.convert.variants and not self.qat.enabled:
            raise SettingsError("convert.variants", "qat_int8 needs qat.enabled: true")
        if self.qat.mode == "auto" and "ptq_int8" not in self.convert.variants:
            raise SettingsError(
                "qat.mode", "auto blesses ptq_int8 when QAT is skipped: add it to convert.variants"
            )
        check_choice("evaluate.candidate", self.evaluate.candidate, self.convert.variants)
        check_choice("evaluate.metric", self.evaluate.metric, BLESSING_METRICS[self.model.task])
        if self.evaluate.baseline:
            check_choice(
                "evaluate.baseline", self.evaluate.baseline, ("keras_float", *self.convert.variants)
            )
        self._check_trainer_workers()
        # Every stage's own options, built now so that no stage rejects later what
        # this config accepted.
        self.stages()

    def _check_trainer_workers(self) -> None:
        """The global batches split evenly over every GPU (or CPU) of every trainer worker."""
        workers, gpus = self.kubeflow.trainer_workers, self.kubeflow.trainer_gpus()
        replicas = workers * max(gpus, 1)
        batches = [("train", self.train.batch_size)]
        if self.qat.enabled:
            batches.append(("qat", self.qat.batch_size))
        for section, batch_size in batches:
            if workers > 1 and batch_size % replicas:
                each = f"{gpus} GPUs each" if gpus else "one CPU replica each"
                raise SettingsError(
                    "kubeflow.trainer_workers",
                    f"{workers} workers with {each} make {replicas} replicas, and "
                    f"{section}.batch_size {batch_size} (the global batch) does not split "
                    f"evenly over them; use a multiple of {replicas}",
                )

    def stages(self) -> StageOptions:
        """The options each component receives (validated)."""
        trainer: TrainerOptions | ClassifierTrainerOptions
        if self.model.task == IMAGE_CLASSIFICATION:
            trainer = ClassifierTrainerOptions(model=self.model, train=self.train)
        else:
            trainer = TrainerOptions(
                model=self.model, train=self.train, postprocess=self.postprocess
            )
        converter = TFLiteSetOptions(convert=self.convert, postprocess=self.postprocess)
        return StageOptions(
            ingest=self.data,
            trainer=trainer,
            qat=self.qat.hparams(),
            qat_check=(
                AccuracyCheck(
                    rule=self.evaluate,
                    converter=converter,
                    mixed_float_layers=self.qat.auto_float_layers,
                )
                if self.qat.mode == "auto"
                else None
            ),
            converter=converter,
            evaluator=self.evaluate,
        )


@dataclass(frozen=True)
class StageOptions:
    """What each component of the pipeline receives, built from one :class:`PipelineConfig`.

    Attributes:
      ingest: ExampleGen's.
      trainer: the Trainer's (the task's options class).
      qat: the QATTrainer's.
      qat_check: the QATTrainer's PTQ check (``qat.mode: auto``), else None.
      converter: the TFLiteConverter's.
      evaluator: the Evaluator's.
    """

    ingest: IngestOptions
    trainer: TrainerOptions | ClassifierTrainerOptions
    qat: QATHParams
    qat_check: AccuracyCheck | None
    converter: TFLiteSetOptions
    evaluator: EvaluateOptions


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
    return settings_to_dict(config)


def _load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = load_yaml(fh)  # anchors and aliases refused: no alias bombs
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_line(path, exc)) from None
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
    """Defaults <- ``base`` <- YAML ``path`` <- ``overrides``, then validate.

    Raises:
      ConfigError: the file cannot be read or parsed, or an override is malformed.
      SettingsError: a key is unknown or a value is invalid, named by its dotted key
        (every stage's options are built here, so nothing a stage would reject passes).
    """
    values: dict[str, Any] = dict(base or {})
    if path:
        values = _merge(values, _load_yaml(path))
    for text in overrides:
        values = _merge(values, parse_override(text))
    return build(PipelineConfig, _merge(task_defaults(values), values))


def task_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults that differ by task, for the ``model.task`` named in ``values``.

    The section classes hold the detector's defaults; an image classifier
    starts from the classifier's own (``ClassifierTrainerOptions``: EfficientNet-Lite0,
    the Model Maker ``HParams`` training defaults, no backbone-freeze regex, no
    EMA), class folders as data and a blessing on top-1. Anything the config
    sets wins.
    """
    model = values.get("model")
    task = model.get("task") if isinstance(model, Mapping) else None
    if task != IMAGE_CLASSIFICATION:
        return {}
    defaults = ClassifierTrainerOptions()
    return {
        "data": {"format": "folder"},
        "model": {"name": defaults.model.name},
        "train": settings_to_dict(defaults.train),
        "evaluate": {"metric": "top1"},
    }


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
