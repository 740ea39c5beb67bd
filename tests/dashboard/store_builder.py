"""Builds ML Metadata stores of pipeline runs for the dashboard tests, the way TFX writes them.

Follows TFX 1.21's portable orchestrator (tfx/orchestration/portable/mlmd/):
contexts ``pipeline`` -> ``pipeline_run`` (parent/child) and ``node``
(``"<pipeline>.<component id>"``); one execution per component with the exec
properties as custom properties (each component's settings as one JSON ``options``
property, built with the library's settings classes) and ``last_known_state``; INPUT/OUTPUT events;
artifacts with TFX's ``tfx_version``/``is_external`` custom properties; cache
hits as CACHED executions whose OUTPUT events point at the earlier run's
artifacts; a failure as a FAILED execution with ``__execution_result__``.

Files: the Evaluator's metrics.json, report.md, report.html and blessing.json
are written by ``model_maker.core.evaluation.write_reports`` itself for
detection runs; a classification run's metrics.json is the hand-checked
``fixtures/classification_metrics.json`` (class names optionally replaced); the
Trainer's ModelRun gets TensorBoard event files written with ``tf.summary``
(``train/`` and ``validation/``, ``epoch_<name>`` tags, as ScalarLogger does), and so
does the QATTrainer's ``model_run`` output when a spec asks for QAT logs. The gallery
files of contract 18 (detections.json, pr_curves.json, predictions.json, thumbnails)
come from :mod:`gallery_builder` when a spec asks for a gallery.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gallery_builder import GallerySpec, write_classification_gallery, write_detection_gallery

from model_maker.core.data.options import IngestOptions
from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.evaluation import (
    BLESSING_FILE,
    METRICS_FILE,
    BlessingRule,
    EvaluateOptions,
    decide_blessing,
)
from model_maker.core.options import (
    IMAGE_CLASSIFICATION,
    OBJECT_DETECTION,
    ModelOptions,
    TrainOptions,
)
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.quantization import ConvertOptions
from model_maker.core.settings import to_json
from model_maker.object_detector.options import TFLiteSetOptions, TrainerOptions

PIPELINE = "qatflow"
COMPONENTS = (
    ("DetectionExampleGen", "components.example_gen.component.DetectionExampleGen"),
    ("Trainer", "components.trainer.component.Trainer"),
    ("QATTrainer", "components.qat_trainer.component.QATTrainer"),
    ("TFLiteConverter", "components.tflite_converter.component.TFLiteConverter"),
    ("Evaluator", "components.evaluator.component.Evaluator"),
    ("Pusher", "components.pusher.component.Pusher"),
)
CLASSES = ("circle", "square", "triangle")
#: metrics.json of a classification run (ants/bees, 153 images, four variants).
CLASSIFICATION_METRICS = os.path.join(
    os.path.dirname(__file__), "fixtures", "classification_metrics.json"
)


@dataclass(frozen=True)
class RunSpec:
    """What one generated run looks like.

    Attributes:
      float_ap: AP of the float32 variant (0..1); ptq/qat follow from the drops.
      ptq_drop: AP lost by ptq_int8 (0..1).
      qat_drop: AP lost by qat_int8 (0..1).
      epochs: Trainer epochs (an exec property, so configs differ between runs).
      learning_rate: Trainer learning rate.
      cache_example_gen: ExampleGen is a cache hit (reuses the previous run's Examples).
      fail_at: component id whose execution fails ("" for none); later ones do not run.
      logs: write TensorBoard logs into the Trainer's ModelRun.
      task: object_detection, or image_classification (metrics.json is then
        CLASSIFICATION_METRICS; the AP settings above are not used).
      class_names: replace the class names, in order (classification: the fixture's;
        detection: CLASSES, in metrics.json and the gallery files).
      qat_logs: the QATTrainer gets a ``model_run`` output with TensorBoard logs.
      gallery: write the Evaluator's gallery files (contract 18): detection as the
        spec says; classification: predictions.json from the confusion matrices.
    """

    float_ap: float = 0.42
    ptq_drop: float = 0.031
    qat_drop: float = 0.004
    epochs: int = 3
    learning_rate: float = 0.08
    cache_example_gen: bool = False
    fail_at: str = ""
    logs: bool = False
    task: str = OBJECT_DETECTION
    class_names: tuple[str, ...] = ()
    qat_logs: bool = False
    gallery: GallerySpec | None = None


@dataclass
class BuiltRun:
    """What was written for one run (the expected values of the tests)."""

    run_id: str
    spec: RunSpec
    metrics: dict[str, Any] = field(default_factory=dict)
    blessed: bool | None = None
    evaluation_uri: str = ""
    log_dir: str = ""
    qat_log_dir: str = ""
    gallery: dict[str, Any] = field(default_factory=dict)


def _store(path: str):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def _set(props: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        props[key].int_value = int(value)
    elif isinstance(value, int):
        props[key].int_value = value
    elif isinstance(value, float):
        props[key].double_value = value
    else:
        props[key].string_value = str(value)


class StoreBuilder:
    """Writes runs into ``<root>/metadata.sqlite`` and artifact folders under ``root``."""

    def __init__(self, root: str, pipeline: str = PIPELINE) -> None:
        from ml_metadata.proto import metadata_store_pb2

        self.pb = metadata_store_pb2
        self.root = root
        self.pipeline = pipeline
        os.makedirs(root, exist_ok=True)
        self.store = _store(os.path.join(root, "metadata.sqlite"))
        self._context_types = {
            name: self.store.put_context_type(metadata_store_pb2.ContextType(name=name))
            for name in ("pipeline", "pipeline_run", "node")
        }
        self._artifact_types: dict[str, int] = {}
        self._execution_types: dict[str, int] = {}
        self.pipeline_context = self._context("pipeline", pipeline)
        self.nodes = {cid: self._context("node", f"{pipeline}.{cid}") for cid, _ in COMPONENTS}
        self.runs: list[BuiltRun] = []
        self._examples = None

    def _context(self, type_name: str, name: str):
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        context = self.pb.Context(type_id=self._context_types[type_name], name=name)
        [context.id] = self.store.put_contexts([context])
        return context

    def _artifact(self, type_name: str, uri: str, **custom: Any):
        if type_name not in self._artifact_types:
            self._artifact_types[type_name] = self.store.put_artifact_type(
                self.pb.ArtifactType(name=type_name)
            )
        artifact = self.pb.Artifact(
            type_id=self._artifact_types[type_name], uri=uri, state=self.pb.Artifact.LIVE
        )
        for key, value in {"tfx_version": "1.21.0", "is_external": 0, **custom}.items():
            _set(artifact.custom_properties, key, value)
        return artifact

    def _event(self, kind: int, key: str):
        event = self.pb.Event(type=kind)
        event.path.steps.add().key = key
        event.path.steps.add().index = 0
        return event

    def _execute(
        self,
        run_context: Any,
        component: str,
        state: int,
        properties: dict[str, Any],
        inputs: Sequence[tuple[str, Any]] = (),
        outputs: Sequence[tuple[str, Any]] = (),
        message: str = "",
    ) -> list[Any]:
        type_name = dict(COMPONENTS)[component]
        if type_name not in self._execution_types:
            self._execution_types[type_name] = self.store.put_execution_type(
                self.pb.ExecutionType(name=type_name)
            )
        execution = self.pb.Execution(
            type_id=self._execution_types[type_name], last_known_state=state
        )
        for key, value in properties.items():
            _set(execution.custom_properties, key, value)
        if message:
            execution.custom_properties["__execution_result__"].string_value = json.dumps(
                {"resultMessage": message, "code": 2}
            )
        pairs = [(a, self._event(self.pb.Event.INPUT, k)) for k, a in inputs]
        pairs += [(a, self._event(self.pb.Event.OUTPUT, k)) for k, a in outputs]
        contexts = [self.pipeline_context, run_context, self.nodes[component]]
        _, artifact_ids, _ = self.store.put_execution(execution, pairs, contexts)
        for (artifact, _), artifact_id in zip(pairs, artifact_ids, strict=True):
            artifact.id = artifact_id
        return [a for a, _ in pairs]

    def add_run(self, spec: RunSpec = RunSpec(), run_id: str = "") -> BuiltRun:
        """Write one run: six executions, their artifacts and files."""
        index = len(self.runs)
        run_id = run_id or f"2026-11-23T10:{index // 60:02d}:{index % 60:02d}.{index:06d}"
        run_context = self.pb.Context(type_id=self._context_types["pipeline_run"], name=run_id)
        [run_context.id] = self.store.put_contexts([run_context])
        self.store.put_parent_contexts(
            [self.pb.ParentContext(parent_id=self.pipeline_context.id, child_id=run_context.id)]
        )
        built = BuiltRun(run_id=run_id, spec=spec)
        self.runs.append(built)
        done, cached, failed = (
            self.pb.Execution.COMPLETE,
            self.pb.Execution.CACHED,
            self.pb.Execution.FAILED,
        )

        def uri(component: str, key: str) -> str:
            path = os.path.join(self.root, component, key, str(index))
            os.makedirs(path, exist_ok=True)
            return path

        def state_of(component: str) -> int:
            return failed if spec.fail_at == component else done

        # ExampleGen: a cache hit reuses the previous Examples artifact (same id).
        gen_props = {
            "options": to_json(
                IngestOptions(
                    format="coco",
                    input="data/images",
                    annotations="data/annotations.json",
                    split_ratios={"train": 0.8, "eval": 0.2},
                )
            )
        }
        if spec.cache_example_gen and self._examples is not None:
            self._execute(run_context, "DetectionExampleGen", cached, gen_props,
                          outputs=[("examples", self._examples)])  # fmt: skip
        else:
            examples = self._artifact("Examples", uri("DetectionExampleGen", "examples"))
            [self._examples] = self._execute(
                run_context, "DetectionExampleGen", done, gen_props,
                outputs=[("examples", examples)],
            )  # fmt: skip
        examples = self._examples

        if spec.fail_at == "Trainer":
            self._execute(run_context, "Trainer", failed, self._trainer_props(spec),
                          inputs=[("examples", examples)],
                          message="ResourceExhaustedError: OOM when allocating tensor")  # fmt: skip
            return built
        model_run_uri = uri("Trainer", "model_run")
        if spec.logs:
            write_training_logs(model_run_uri, spec)
            built.log_dir = model_run_uri
        _, model, _ = self._execute(
            run_context, "Trainer", done, self._trainer_props(spec),
            inputs=[("examples", examples)],
            outputs=[
                ("model", self._artifact("Model", uri("Trainer", "model"), AP=spec.float_ap)),
                ("model_run", self._artifact("ModelRun", model_run_uri)),
            ],
        )  # fmt: skip
        qat_outputs = [("qat_model", self._artifact("Model", uri("QATTrainer", "qat_model")))]
        if spec.qat_logs:
            built.qat_log_dir = uri("QATTrainer", "model_run")
            write_training_logs(built.qat_log_dir, spec, qat=True)
            qat_outputs.append(("model_run", self._artifact("ModelRun", built.qat_log_dir)))
        _, _, qat_model, *_ = self._execute(
            run_context, "QATTrainer", done,
            {"options": to_json(QATHParams(learning_rate=0.03, batch_size=32, epochs=2,
                                           decay_steps=231, decay_rate=0.96)),
             "train_split": "train", "eval_split": "eval", "checkpoint_dir": ""},
            inputs=[("examples", examples), ("model", model)],
            outputs=qat_outputs,
        )  # fmt: skip
        variants = ["float32", "ptq_int8", "qat_int8"]
        *_, tflite = self._execute(
            run_context, "TFLiteConverter", done,
            {"options": to_json(TFLiteSetOptions(
                convert=ConvertOptions(variants=tuple(variants), int8_input_type="uint8",
                                       representative_samples=100, with_nms=True),
                postprocess=NMSOptions(max_detections=25, score_threshold=1e-8,
                                       iou_threshold=0.5)))},
            inputs=[("examples", examples), ("model", model), ("qat_model", qat_model)],
            outputs=[("tflite", self._artifact("components.TFLiteModel",
                                               uri("TFLiteConverter", "tflite")))],
        )  # fmt: skip
        classifier = spec.task == IMAGE_CLASSIFICATION
        evaluate = EvaluateOptions(
            candidate="qat_int8",
            metric="top1" if classifier else "AP",
            max_drop=1.0,
            baseline="keras_float" if classifier else "",
            latency_runs=20,
            split="eval",
        )
        eval_props = {"options": to_json(evaluate)}
        if spec.fail_at == "Evaluator":
            self._execute(run_context, "Evaluator", failed, eval_props,
                          inputs=[("examples", examples), ("tflite", tflite), ("model", model)],
                          message="DataError: no eval_annotations.json")  # fmt: skip
            return built
        evaluation_uri = uri("Evaluator", "evaluation")
        write = write_classification_evaluation if classifier else write_evaluation
        decision = write(evaluation_uri, spec)
        built.evaluation_uri = evaluation_uri
        with open(os.path.join(evaluation_uri, "metrics.json"), encoding="utf-8") as fh:
            built.metrics = json.load(fh)
        if spec.gallery is not None and classifier:
            built.gallery = write_classification_gallery(evaluation_uri, built.metrics)
        elif spec.gallery is not None:
            names = spec.class_names or CLASSES
            built.gallery = write_detection_gallery(evaluation_uri, spec.gallery, names)
        built.blessed = decision.blessed
        blessing_uri = uri("Evaluator", "blessing")
        blessing = self._artifact(
            "ModelBlessing", blessing_uri, blessed=int(decision.blessed),
            candidate=decision.candidate, reason="; ".join(decision.reasons),
        )  # fmt: skip
        _, _, _, evaluation, blessing = self._execute(
            run_context, "Evaluator", done, eval_props,
            inputs=[("examples", examples), ("tflite", tflite), ("model", model)],
            outputs=[("evaluation", self._artifact("ModelEvaluation", evaluation_uri)),
                     ("blessing", blessing)],
        )  # fmt: skip
        pushed_props: dict[str, Any] = {"pushed": int(decision.blessed)}
        if decision.blessed:
            pushed_props.update(pushed_destination=os.path.join(self.root, "serving", f"v{index}"),
                                pushed_version=f"v{index}", reason="pushed")  # fmt: skip
        else:
            pushed_props["reason"] = "not blessed: " + "; ".join(decision.reasons)
        self._execute(
            run_context, "Pusher", done, {"destination": os.path.join(self.root, "serving")},
            inputs=[("tflite", tflite), ("evaluation", evaluation), ("blessing", blessing)],
            outputs=[("pushed_model", self._artifact("PushedModel", uri("Pusher", "pushed_model"),
                                                     **pushed_props))],
        )  # fmt: skip
        return built

    @staticmethod
    def _trainer_props(spec: RunSpec) -> dict[str, Any]:
        if spec.task == IMAGE_CLASSIFICATION:
            # The classifier Trainer's options: the same model/train sections, task set.
            model = ModelOptions(task=IMAGE_CLASSIFICATION, name="mobilenet_v2")
            train = TrainOptions(epochs=spec.epochs, batch_size=32,
                                 learning_rate=spec.learning_rate, var_freeze_expr="")  # fmt: skip
            options = {"model": json.loads(to_json(model)), "train": json.loads(to_json(train)),
                       "train_split": "train", "eval_split": "eval"}  # fmt: skip
            return {"options": json.dumps(options), "checkpoint_dir": ""}
        options = TrainerOptions(
            model=ModelOptions(name="efficientdet_lite0", hparams={"map_freq": 1}),
            train=TrainOptions(
                epochs=spec.epochs,
                batch_size=8,
                learning_rate=spec.learning_rate,
                warmup_epochs=1.0,
                seed=111111,
            ),
        )
        return {"options": to_json(options), "checkpoint_dir": ""}


def variant_metrics(spec: RunSpec) -> dict[str, dict[str, float]]:
    """COCO metrics per variant (0..1) that a run of ``spec`` reports."""
    out = {}
    for index, (name, drop) in enumerate(
        (("float32", 0.0), ("ptq_int8", spec.ptq_drop), ("qat_int8", spec.qat_drop))
    ):
        ap = spec.float_ap - drop
        metrics = {"AP": ap, "AP50": min(ap + 0.25, 1.0), "AP75": ap * 0.9, "APs": -1.0,
                   "APm": ap * 0.8, "APl": ap * 1.1, "ARmax1": ap * 0.7, "ARmax10": ap + 0.1,
                   "ARmax100": ap + 0.12}  # fmt: skip
        for k, cls in enumerate(spec.class_names or CLASSES):
            metrics[f"AP_/{cls}"] = ap + (k - 1) * 0.05 - 0.01 * index * k
        out[name] = metrics
    return out


def write_evaluation(folder: str, spec: RunSpec):
    """metrics.json, report.md, report.html, blessing.json as the Evaluator writes them."""
    from model_maker.core import evaluation as ev

    metrics = variant_metrics(spec)
    sizes = {"float32": 13_300_000, "ptq_int8": 4_400_000, "qat_int8": 4_450_000}
    latency = {"float32": 61.5, "ptq_int8": 24.2, "qat_int8": 25.1}
    entries = []
    for name, values in metrics.items():
        entries.append(
            {
                "variant": name,
                "file": f"{name}.tflite",
                "bytes": sizes[name],
                "latency": {
                    "median_ms": latency[name],
                    "p90_ms": latency[name] * 1.1,
                    "runs": 20,
                    "num_threads": 1,
                },  # fmt: skip
                "num_images": 40,
                "num_detections": 1000,
                "metrics": values,
                "delta_to_float": {
                    k: v - metrics["float32"][k]
                    for k, v in values.items()
                    if v >= 0 and metrics["float32"][k] >= 0
                },
            }
        )
    decision = ev.decide_blessing(metrics, ev.BlessingRule(candidate="qat_int8", max_drop=1.0))
    # The Evaluator's own renderers; written with open() (write_reports would import TF).
    contents = {
        ev.METRICS_FILE: json.dumps(
            ev.metrics_document(entries, "float32", decision.candidate, decision.to_dict()),
            indent=2,
        ),
        ev.REPORT_MD: ev.render_markdown(entries, "float32", decision),
        ev.REPORT_HTML: ev.render_html(entries, "float32", decision),
        ev.BLESSING_FILE: json.dumps(decision.to_dict(), indent=2),
    }
    for name, text in contents.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return decision


def classification_document(class_names: Sequence[str] = ()) -> dict[str, Any]:
    """CLASSIFICATION_METRICS, its class names replaced by ``class_names`` (in order) if given."""
    with open(CLASSIFICATION_METRICS, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not class_names:
        return doc
    rename = dict(zip(doc["classes"], class_names, strict=True))
    doc["classes"] = list(class_names)
    for entry in doc["variants"]:
        for section in ("metrics", "delta_to_float"):
            entry[section] = {
                f"acc_/{rename[k[len('acc_/') :]]}" if k.startswith("acc_/") else k: v
                for k, v in entry[section].items()
            }
    return doc


def write_classification_evaluation(folder: str, spec: RunSpec):
    """metrics.json and blessing.json of a classification run; its blessing decision."""
    doc = classification_document(spec.class_names)
    by_variant = {e["variant"]: e["metrics"] for e in doc["variants"]}
    rule = BlessingRule(candidate="qat_int8", metric="top1", max_drop=1.0, baseline="keras_float")
    decision = decide_blessing(by_variant, rule)
    assert decision.to_dict() == doc["blessing"], "the fixture's blessing is out of date"
    files = ((METRICS_FILE, doc), (BLESSING_FILE, decision.to_dict()))
    for name, content in files:
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            json.dump(content, fh, indent=2)
    return decision


#: Epochs of the QATTrainer's fine-tuning in the generated runs (QATHParams.epochs).
QAT_EPOCHS = 2


def training_scalars(
    spec: RunSpec, qat: bool = False
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """split -> tag -> [(epoch, value)] of a run's training logs (the QATTrainer's if ``qat``)."""
    if qat:
        epochs = range(1, QAT_EPOCHS + 1)
        return {
            "train": {
                "epoch_loss": [(e, round(0.6 / e, 6)) for e in epochs],
                "epoch_learning_rate": [(e, 0.03 * 0.96**e) for e in epochs],
            },
            "validation": {
                "epoch_loss": [(e, round(0.7 / e, 6)) for e in epochs],
                "epoch_AP": [(e, spec.float_ap - spec.qat_drop * (QAT_EPOCHS + 1 - e))
                             for e in epochs],
            },
        }  # fmt: skip
    epochs = range(1, spec.epochs + 1)
    return {
        "train": {
            "epoch_loss": [(e, round(2.0 / e, 6)) for e in epochs],
            "epoch_learning_rate": [(e, spec.learning_rate * min(e, 2) / 2) for e in epochs],
        },
        "validation": {
            "epoch_loss": [(e, round(2.2 / e, 6)) for e in epochs],
            "epoch_AP": [(e, spec.float_ap * e / spec.epochs) for e in epochs],
        },
    }


def write_training_logs(run_dir: str, spec: RunSpec, qat: bool = False) -> None:
    """TensorBoard event files with tf.summary, like the (QAT)Trainer's ScalarLogger."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    for split, tags in training_scalars(spec, qat).items():
        writer = tf.summary.create_file_writer(os.path.join(run_dir, split))
        with writer.as_default():
            for tag, points in tags.items():
                for step, value in points:
                    tf.summary.write(tag, tf.constant(float(value)), step=step, metadata=metadata)
        writer.close()


def build_runs(root: str, specs: Sequence[RunSpec], pipeline: str = PIPELINE) -> list[BuiltRun]:
    """A store under ``root`` with one run per spec (oldest first)."""
    builder = StoreBuilder(root, pipeline)
    for spec in specs:
        builder.add_run(spec)
    return builder.runs


def many_specs(count: int) -> list[RunSpec]:
    """``count`` varied runs (every 7th a cache hit, every 50th failing), no logs."""
    return [
        dataclasses.replace(
            RunSpec(),
            float_ap=0.30 + 0.001 * i,
            qat_drop=0.004 if i % 3 else 0.02,
            epochs=2 + i % 4,
            cache_example_gen=i % 7 == 3,
            fail_at="Evaluator" if i % 50 == 49 else "",
        )
        for i in range(count)
    ]
