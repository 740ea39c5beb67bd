"""Evaluate detector variants on an eval split with Beam, LiteRT and pycocotools.

One evaluator for every variant (float32/PTQ/QAT TFLite files, the Keras float
model, third-party ``.tflite`` files):

1. a Beam pipeline reads the eval images (Examples TFRecords or an image
   folder), a ``DoFn`` loads its detector once per worker (``setup``) and
   emits COCO detection dicts (``bbox`` ``[x, y, w, h]`` in original pixels,
   ``category_id`` = 0-based class + 1, the ids of ``label_map.json``);
2. the detections are gathered and scored by
   :func:`model_maker.core.coco_metrics.evaluate_coco` (one pycocotools
   COCOeval run per variant gives the metrics and the precision/recall curves)
   against the split's COCO ground truth;
3. :func:`evaluate_variants` adds file size and latency (median/p90 of
   interpreter invocations, 1 thread), the delta of every metric to the float
   baseline, a blessing decision, and writes ``metrics.json``, ``report.md``,
   ``report.html`` and ``blessing.json``; plus ``pr_curves.json`` (the curves),
   ``detections.json`` (every variant's boxes per image and their difference
   to the baseline) and ``gallery/`` thumbnails (:mod:`model_maker.core.gallery`),
   whose most different images report.html shows with their boxes drawn;
   and what the TFLite set says about its quantization (the per-layer int8
   error, the layers ``ptq_mixed`` kept float, what ``qat.mode: auto``
   decided: :mod:`model_maker.core.quantization_report`), copied and reported.

Units: metrics are pycocotools fractions 0..1 everywhere in files and objects;
the reports print them as AP points (x100). The blessing threshold
``max_drop`` is in points: ``max_drop=1.0`` allows ``candidate >= baseline - 0.01``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from model_maker.core.coco_metrics import (
    PR_CURVES_FILE,
    evaluate_coco,
    pr_curves,
    pr_curves_document,
)
from model_maker.core.data import fileio
from model_maker.core.data.records import decode_example
from model_maker.core.errors import DataError, UsageError
from model_maker.core.evaluate_options import BlessingRule, EvaluateOptions  # noqa: F401 - API
from model_maker.core.gallery import (
    DETECTIONS_FILE,
    GALLERY_DIR,
    compact_detections,
    detection_gallery,
    strict_json,
)
from model_maker.core.litert_detector import Preprocessing, TFLiteDetectorFactory
from model_maker.core.metrics_document import (
    METRICS_FILE,
    PER_CLASS_PREFIX,
    SUMMARY_KEYS,
    metrics_document,
)
from model_maker.core.quantization_report import QuantizationReport
from model_maker.core.report_tables import html_table, markdown_table
from model_maker.core.tflite_manifest import (  # noqa: F401 - read_manifest is part of the API
    LABELS_FILE,
    MANIFEST_FILE,
    manifest_nms,
    read_manifest,
)
from model_maker.core.tflite_metadata import read_labels

if TYPE_CHECKING:
    from model_maker.core.beam_io import ShardLayout, WrittenCounts

LOG = logging.getLogger("qatflow")

#: Variant name of the Keras float model; preferred as the float baseline.
KERAS_FLOAT = "keras_float"
#: TFLite float variant, the baseline when the Keras model is not evaluated.
TFLITE_FLOAT = "float32"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
BLESSING_FILE = "blessing.json"


class Detector(Protocol):
    """Anything that turns an RGB uint8 image into detections in its pixels."""

    def detect(self, image: Any) -> Any:  # -> litert_detector.Detections
        ...


DetectorFactory = Callable[[], Detector]


# --- sources ---------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSource:
    """Where the eval images come from (exactly one of the two).

    Attributes:
      record_files: TFRecord files (or patterns) of the Examples contract; the
        COCO image id is ``int(image/source_id)``.
      images: ``(image_id, image file path)`` pairs.
    """

    record_files: tuple[str, ...] = ()
    images: tuple[tuple[Any, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.record_files) == bool(self.images):
            raise ValueError("give exactly one of record_files and images")

    @classmethod
    def from_image_folder(cls, ground_truth: Mapping[str, Any], folder: str) -> EvalSource:
        """The images of a COCO ground truth, looked up by ``file_name`` in ``folder``."""
        pairs, missing = [], []
        for image in ground_truth.get("images", []):
            name = image.get("file_name") or ""
            path = fileio.join(folder, name)
            if name and fileio.isfile(path):
                pairs.append((image["id"], path))
            else:
                missing.append(name or str(image["id"]))
        if missing:
            raise DataError(
                f"{len(missing)} image(s) of the annotations are not in {folder} "
                f"(first: {', '.join(missing[:3])})"
            )
        if not pairs:
            raise DataError("the annotations list no images")
        return cls(images=tuple(pairs))


def _image_id(source_id: str) -> Any:
    try:
        return int(source_id)
    except ValueError:
        return source_id


def _from_record(serialized: bytes) -> tuple[Any, bytes]:

    example = decode_example(serialized)
    return _image_id(example.source_id), example.encoded


def _from_file(item: tuple[Any, str]) -> tuple[Any, bytes]:
    image_id, path = item
    return image_id, fileio.read_bytes(path)


def source_images(source: EvalSource) -> Iterator[tuple[Any, bytes]]:
    """``(image id, encoded bytes)`` of the images of ``source``, read in this process,
    one at a time, in file order (records: each pattern's files sorted).

    Raises:
      RecordError: a record that is not a tf.train.Example of the contract.
      OSError: a file cannot be read.
    """
    if source.images:
        for item in source.images:
            yield _from_file(item)
        return
    # deferred: TensorFlow takes seconds to import; only the record path needs it
    import tensorflow as tf

    for pattern in source.record_files:
        for path in sorted(tf.io.gfile.glob(pattern)) or [pattern]:
            compression = "GZIP" if path.endswith(".gz") else ""
            records = tf.data.TFRecordDataset(path, compression_type=compression)
            for serialized in records.as_numpy_iterator():
                yield _from_record(serialized)


def decode_image(encoded: bytes):
    """RGB uint8 ``[h, w, 3]`` of JPEG/PNG/BMP/GIF bytes (first frame)."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


# --- the Beam pipeline --------------------------------------------------------------


def _beam_dofn_class():
    # deferred: Apache Beam is heavy; only this path needs it
    import apache_beam as beam

    class DetectFn(beam.DoFn):
        """Loads one detector per worker in ``setup``; one JSON line per image.

        Each line carries the seconds the image took (decode + detect); the
        first line of a worker also carries the seconds its detector took to
        load, so the evaluation can report start-up and per-image cost apart.
        """

        def __init__(self, factory: DetectorFactory) -> None:
            super().__init__()
            self._factory = factory
            self._detector = None
            self._load_seconds: float | None = None

        def setup(self) -> None:
            start = time.perf_counter()
            self._detector = self._factory()
            self._load_seconds = time.perf_counter() - start

        def process(self, element: tuple[Any, bytes]):
            image_id, encoded = element
            start = time.perf_counter()
            found = self._detector.detect(decode_image(encoded))
            line = {
                "image_id": image_id,
                "detections": found.to_coco(image_id),
                "seconds": time.perf_counter() - start,
            }
            if self._load_seconds is not None:
                line["load_seconds"], self._load_seconds = self._load_seconds, None
            yield json.dumps(line)

    return DetectFn


@dataclass(frozen=True)
class BeamOptions:
    """How the evaluation pipeline runs.

    Attributes:
      num_workers: DirectRunner worker processes (multi-processing when > 1).
      running_mode: DirectRunner mode; "" picks in_memory for 1 worker and
        multi_processing otherwise.
      beam_args: extra Beam arguments, passed through (e.g. ``--runner=...``);
        they win over the two fields above.
    """

    num_workers: int = 1
    running_mode: str = ""
    beam_args: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, beam_args: Sequence[str]) -> BeamOptions:
        """Options from Beam arguments (``--direct_num_workers=0``: one worker per core)."""
        workers = 1
        for arg in beam_args:
            if arg.startswith("--direct_num_workers="):
                value = arg.split("=", 1)[1]
                try:
                    workers = int(value) or (os.cpu_count() or 1)
                except ValueError:
                    raise UsageError(f"Beam argument {arg!r}: expected an integer") from None
        return cls(num_workers=workers, beam_args=tuple(beam_args))

    def pipeline_args(self) -> list[str]:
        mode = self.running_mode or ("in_memory" if self.num_workers <= 1 else "multi_processing")
        args = [
            "--runner=DirectRunner",
            f"--direct_num_workers={max(1, self.num_workers)}",
            f"--direct_running_mode={mode}",
        ]
        given = {a.split("=", 1)[0] for a in self.beam_args}
        return [a for a in args if a.split("=", 1)[0] not in given] + list(self.beam_args)


#: Name prefix of the detection shards in run_detection's folder.
DETECTIONS_PREFIX = "detections"


#: Sub-folder of run_detection's folder where the driver spools an image folder source.
ITEMS_SPOOL = "items"


def _detection_line(line: str) -> tuple[str, str, None]:
    return ("detections", line, None)


def _publish_detections(counts: WrittenCounts, layout: ShardLayout, manifest: str) -> int:
    """The pipeline's last step: publish the detection shards (checked against the lines
    that went in) and write ``manifest``, which the driver checks what it reads against.

    ``counts``: the writer's tokens counted per shard (:func:`beam_io.count_written`),
    not the tokens: what reaches this step grows with the shards, not the images."""
    # deferred: Apache Beam is heavy; only this path needs it
    from model_maker.core.beam_io import commit_shards

    commit = commit_shards(counts, layout)
    files = commit.files["detections"]
    fileio.write_text(manifest, json.dumps({"files": list(files), "lines": counts.elements}))
    return counts.elements


@dataclass(frozen=True)
class DetectionCost:
    """Where the time of one variant's detection pass went.

    Attributes:
      seconds: wall time of the whole pass (pipeline start, workers, reading,
        decoding, detecting, writing and reading back the detections).
      images: images detected.
      workers: Beam workers that detected images (each loaded the detector once).
      load_seconds: seconds those workers spent loading the detector, summed.
      image_seconds: seconds spent on the images (decode + detect), summed.
      median_image_seconds: the median image's decode + detect seconds: the
        steady cost, without a worker's first call (a LiteRT interpreter, for
        one, prepares its delegate on the first invoke).
    """

    seconds: float
    images: int
    workers: int
    load_seconds: float
    image_seconds: float
    median_image_seconds: float = 0.0

    @property
    def per_image_ms(self) -> float | None:
        """Decode + detect time of the median image, in milliseconds."""
        return 1000.0 * self.median_image_seconds if self.images else None

    @property
    def startup_seconds(self) -> float:
        """Wall time not explained by the images at their steady cost: pipeline and
        worker start-up, detector loading, first calls, reading and writing (the
        workers' image time overlaps)."""
        steady = self.images * self.median_image_seconds
        return max(self.seconds - steady / max(self.workers, 1), 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "images": self.images,
            "workers": self.workers,
            "startup_seconds": self.startup_seconds,
            "load_seconds": self.load_seconds,
            "per_image_ms": self.per_image_ms,
        }


@dataclass(frozen=True)
class DetectionRun:
    """What :func:`detect_all` returns: the COCO detections, the image count, the cost."""

    detections: list[dict[str, Any]]
    count: int
    cost: DetectionCost


def run_detection(
    factory: DetectorFactory,
    source: EvalSource,
    options: BeamOptions = BeamOptions(),
    work_dir: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """(COCO detection dicts, number of images processed) of :func:`detect_all`."""
    run = detect_all(factory, source, options, work_dir)
    return run.detections, run.count


def detect_all(
    factory: DetectorFactory,
    source: EvalSource,
    options: BeamOptions = BeamOptions(),
    work_dir: str | None = None,
) -> DetectionRun:
    """Detections of every image of ``source`` (Beam pipeline), and what they cost.

    The pipeline is one chain ending in one step, reads records with ``Create`` and
    ``ReadAllFromTFRecord`` and writes the detection lines through
    :mod:`model_maker.core.beam_io`, so that it runs unchanged on the DaskRunner
    (which computes only the last step, cannot read a source from the pipeline root
    and loses what Beam's ``WriteToText`` finalizes).

    Args:
      factory: picklable zero-argument callable giving the detector (called
        once per Beam worker).
      source: the images.
      options: runner options.
      work_dir: folder (local or gfile URL) for the intermediate detections;
        None uses a local temporary folder (runners whose workers share this
        machine's disk only).

    Returns:
      :class:`DetectionRun`.

    Raises:
      ShardError: the detection files do not hold one line per image that went
        into the writer, or (image folder sources) not one per listed image.
    """
    # deferred: Apache Beam is heavy; only this path needs it
    import apache_beam as beam
    import tensorflow as tf

    from model_maker.core import beam_io
    from model_maker.core.beam_spool import spooled_items

    gfile = tf.io.gfile
    detect_fn = _beam_dofn_class()
    start = time.perf_counter()
    workers, load_seconds, image_seconds = 0, 0.0, []
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
        else:  # any gfile URL, so that remote runners can write there
            tmp = os.path.join(work_dir, f".detections-{uuid.uuid4().hex[:12]}")
            gfile.makedirs(tmp)
            stack.callback(gfile.rmtree, tmp)
        layout = beam_io.ShardLayout(
            {"detections": fileio.join(tmp, DETECTIONS_PREFIX)},
            fileio.join(tmp, ".shards-temp"),
            suffix=".jsonl",
            kind="text",
        )
        manifest = fileio.join(tmp, "manifest.json")
        pipeline = _pipeline(options)
        if source.record_files:
            images = (
                pipeline
                | "Patterns" >> beam.Create(list(source.record_files))
                | "Read" >> beam.io.ReadAllFromTFRecord()
                | "Decode" >> beam.Map(_from_record)
            )
        else:  # the pairs reach the workers in spool files, not embedded in the pipeline
            images = spooled_items(
                pipeline, source.images, fileio.join(tmp, ITEMS_SPOOL), "Images"
            ) | "ReadFiles" >> beam.Map(_from_file)
        lines = images | "Detect" >> beam.ParDo(detect_fn(factory))
        written = beam_io.write_shards(lines | "Keyed" >> beam.Map(_detection_line), layout)
        # One chain to one last step (DaskRunner); the tokens are counted, not gathered.
        _ = beam_io.count_written(written, "CountWritten") | "Publish" >> beam.Map(
            _publish_detections, layout, manifest
        )
        beam_io.run(pipeline)
        published = json.loads(fileio.read_text(manifest))
        detections, count = [], 0
        for path in published["files"]:
            with gfile.GFile(path) as fh:
                for line in fh:
                    if line.strip():
                        count += 1
                        record = json.loads(line)
                        detections.extend(record["detections"])
                        image_seconds.append(float(record.get("seconds", 0.0)))
                        if "load_seconds" in record:
                            workers += 1
                            load_seconds += float(record["load_seconds"])
    expected = len(source.images) if source.images else published["lines"]
    if count != published["lines"] or count != expected:
        raise beam_io.ShardError(
            f"run_detection: {count} detection lines read, {published['lines']} written, "
            f"{expected} images expected"
        )
    cost = DetectionCost(
        seconds=time.perf_counter() - start,
        images=count,
        workers=workers,
        load_seconds=load_seconds,
        image_seconds=sum(image_seconds),
        median_image_seconds=statistics.median(image_seconds) if image_seconds else 0.0,
    )
    return DetectionRun(detections, count, cost)


def _pipeline(options: BeamOptions):
    """The Beam pipeline of ``options``."""
    # deferred: Apache Beam is heavy; only this path needs it
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    return beam.Pipeline(options=PipelineOptions(options.pipeline_args()))


# --- blessing -----------------------------------------------------------------------


@dataclass(frozen=True)
class BlessingDecision:
    """The outcome of a :class:`BlessingRule`, with the reasons spelled out.

    Attributes:
      blessed: the candidate may be pushed.
      candidate: candidate variant.
      baseline: baseline variant ("" when none was evaluated).
      metric: compared metric.
      candidate_value: candidate's metric (0..1), None when missing.
      baseline_value: baseline's metric (0..1), None when missing.
      threshold: smallest passing value (0..1), None when no baseline.
      max_drop: allowed drop in points.
      reasons: human-readable lines explaining the decision.
    """

    blessed: bool
    candidate: str
    baseline: str
    metric: str
    candidate_value: float | None
    baseline_value: float | None
    threshold: float | None
    max_drop: float
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pick_baseline(variants: Iterable[str], requested: str = "") -> str:
    """The float reference among ``variants`` ("" when there is none)."""
    names = list(variants)
    if requested:
        return requested if requested in names else ""
    for name in (KERAS_FLOAT, TFLITE_FLOAT):
        if name in names:
            return name
    return ""


def decide_blessing(
    metrics: Mapping[str, Mapping[str, float]], rule: BlessingRule
) -> BlessingDecision:
    """Apply ``rule`` to ``metrics`` (variant -> metric name -> value in 0..1)."""
    baseline = pick_baseline(metrics, rule.baseline)
    cand = metrics.get(rule.candidate, {}).get(rule.metric)
    base = metrics.get(baseline, {}).get(rule.metric) if baseline else None
    reasons: list[str] = []

    def done(blessed: bool, threshold: float | None = None) -> BlessingDecision:
        return BlessingDecision(
            blessed, rule.candidate, baseline, rule.metric, cand, base, threshold,
            rule.max_drop, reasons,
        )  # fmt: skip

    if rule.candidate not in metrics:
        reasons.append(f"candidate variant {rule.candidate!r} was not evaluated")
        return done(False)
    if not baseline:
        wanted = rule.baseline or f"{KERAS_FLOAT} or {TFLITE_FLOAT}"
        reasons.append(f"no float baseline ({wanted}) was evaluated to compare with")
        return done(False)
    if cand is None or base is None or cand < 0 or base < 0:
        reasons.append(
            f"metric {rule.metric!r} is missing or undefined (candidate {cand}, baseline {base})"
        )
        return done(False)
    threshold = base - rule.max_drop / 100.0
    drop = (base - cand) * 100.0
    # 1e-9 absorbs float rounding of "baseline - max_drop / 100" at the boundary.
    blessed = cand >= threshold - 1e-9
    verdict = "within" if blessed else "more than"
    reasons.append(
        f"{rule.candidate} {rule.metric} {cand * 100:.2f} vs {baseline} {base * 100:.2f}: "
        f"drop {drop:.2f} points, {verdict} the allowed {rule.max_drop:g}"
    )
    return done(blessed, threshold)


# --- evaluating variants --------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One model to evaluate.

    Attributes:
      name: variant name (float32, ptq_int8, qat_int8, keras_float...).
      factory: picklable zero-argument callable returning a :class:`Detector`
        (e.g. :class:`model_maker.core.litert_detector.TFLiteDetectorFactory`).
      path: model file or folder, for its size ("" when not applicable).
    """

    name: str
    factory: DetectorFactory
    path: str = ""


def size_bytes(path: str) -> int | None:
    if not path:
        return None
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    gfile = tf.io.gfile
    if not gfile.isdir(path):
        return int(gfile.stat(path).length) if gfile.exists(path) else None
    total = 0
    for root, _, names in gfile.walk(path):
        total += sum(int(gfile.stat(os.path.join(root, n)).length) for n in names)
    return total


def deltas(metrics: Mapping[str, float], baseline: Mapping[str, float] | None) -> dict:
    if baseline is None:
        return {}
    out = {}
    for key, value in metrics.items():
        ref = baseline.get(key)
        if ref is not None and value >= 0 and ref >= 0:
            out[key] = value - ref
    return out


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate_variants` computed and wrote.

    Attributes:
      variants: one dict per variant (the entries of metrics.json).
      baseline: float reference variant ("" when none).
      decision: the blessing decision.
      files: written file name -> path (the thumbnails: their folder, ``gallery``).
    """

    variants: list[dict[str, Any]]
    baseline: str
    decision: BlessingDecision
    files: dict[str, str]


def evaluate_variants(
    variants: Sequence[Variant],
    source: EvalSource,
    ground_truth: Mapping[str, Any] | str,
    output_dir: str,
    *,
    label_names: Mapping[int, str] | None = None,
    rule: BlessingRule = BlessingRule(),
    latency_runs: int = 20,
    beam: BeamOptions = BeamOptions(),
    work_dir: str | None = None,
    quantization: QuantizationReport | None = None,
) -> EvaluationResult:
    """Evaluate every variant, decide the blessing and write the reports.

    Args:
      variants: models to evaluate.
      source: eval images.
      ground_truth: COCO ground truth (dict or JSON path) with the same image ids.
      output_dir: folder for metrics.json, report.md, report.html, blessing.json,
        pr_curves.json, detections.json and the gallery/ thumbnails.
      label_names: category id (1-based) -> name; defaults to the ground truth's.
      rule: blessing rule.
      latency_runs: timed invocations per variant (0 skips latency).
      beam: pipeline options.
      work_dir: intermediate files (see :func:`run_detection`).
      quantization: what the TFLite set says about its quantization
        (:func:`~model_maker.core.quantization_report.read_quantization_report`):
        its files copied, reported, and the float layers added to the mixed
        variants' entries.

    Raises:
      ValueError: variant names that are not unique, or a detection of an
        image the ground truth does not list.
      OSError: a file cannot be read or written.
    """
    if isinstance(ground_truth, str | os.PathLike):
        ground_truth = json.loads(fileio.read_text(os.fspath(ground_truth)))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique, got {names}")
    if label_names is None:
        label_names = {int(c["id"]): str(c["name"]) for c in ground_truth.get("categories") or []}
    entries: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    boxes: dict[str, dict[str, list[list[float]]]] = {}
    recall_points: Sequence[float] = ()
    for variant in variants:
        LOG.info("evaluating %s", variant.name)
        began = time.perf_counter()
        run = detect_all(variant.factory, source, beam, work_dir=work_dir)
        detections, count = run.detections, run.count
        scoring = time.perf_counter()
        scored = evaluate_coco(ground_truth, detections, label_names)
        curves[variant.name], recall_points = pr_curves(scored), scored.recall_points
        boxes[variant.name] = compact_detections(detections)  # the dicts can go now
        timed = time.perf_counter()
        latency = _latency(variant, latency_runs)
        cost = {
            **run.cost.to_dict(),
            "scoring_seconds": timed - scoring,
            "latency_seconds": time.perf_counter() - timed,
            "total_seconds": time.perf_counter() - began,
        }
        LOG.info("%s: %s", variant.name, describe_cost(cost))
        entry = _variant_entry(variant, count, len(detections), scored.metrics, latency)
        entries.append({**entry, "cost": cost})
    by_name = {e["variant"]: e["metrics"] for e in entries}
    baseline = pick_baseline(by_name, rule.baseline)
    for entry in entries:
        entry["delta_to_float"] = deltas(entry["metrics"], by_name.get(baseline))
        if quantization is not None:
            entry.update(quantization.mixed.get(entry["variant"], {}))
    decision = decide_blessing(by_name, rule)
    gallery = detection_gallery(
        ground_truth, label_names, boxes, baseline, source_images(source), output_dir
    )
    files = write_files(
        output_dir,
        {
            PR_CURVES_FILE: strict_json(pr_curves_document(curves, recall_points)),
            DETECTIONS_FILE: strict_json(gallery.document),
        },
    )
    files.update(
        write_reports(
            entries, baseline, decision, output_dir, gallery.report_html, quantization=quantization
        )
    )
    if gallery.thumbnails:
        files[GALLERY_DIR] = os.path.join(output_dir, GALLERY_DIR)
    return EvaluationResult(entries, baseline, decision, files)


def _variant_entry(
    variant: Variant,
    num_images: int,
    num_detections: int,
    metrics: dict[str, float],
    latency: dict[str, Any] | None,
) -> dict[str, Any]:
    """The metrics.json entry of a variant (without ``delta_to_float``)."""
    return {
        "variant": variant.name,
        "file": os.path.basename(variant.path.rstrip("/")) if variant.path else "",
        "bytes": size_bytes(variant.path),
        "latency": latency,
        "num_images": num_images,
        "num_detections": num_detections,
        "metrics": metrics,
    }


def describe_cost(cost: Mapping[str, Any]) -> str:
    """One line of a variant's evaluation cost (the ``cost`` entry of metrics.json)."""
    per_image = cost.get("per_image_ms")
    return (
        f"{cost['images']} images in {cost['total_seconds']:.1f} s: start-up "
        f"{cost['startup_seconds']:.1f} s (detector load {cost['load_seconds']:.1f} s, "
        f"{cost['workers']} worker(s)), "
        + ("n/a" if per_image is None else f"{per_image:.1f} ms")
        + f" per image, scoring {cost['scoring_seconds']:.1f} s, "
        f"latency runs {cost['latency_seconds']:.1f} s"
    )


def _latency(variant: Variant, runs: int) -> dict[str, Any] | None:
    """Median/p90 of ``runs`` timed invocations (None: no runs, or a detector that cannot time)."""
    if runs <= 0:
        return None
    detector = variant.factory()
    if not hasattr(detector, "latency"):
        return None
    stats = detector.latency(runs=runs)
    return {
        "median_ms": stats.median_ms,
        "p90_ms": stats.p90_ms,
        "runs": stats.runs,
        "num_threads": stats.num_threads,
    }


# --- reports ----------------------------------------------------------------------------


def _points(value: float | None) -> str:
    return "n/a" if value is None or value < 0 else f"{value * 100:.2f}"


def _delta(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.2f}"


def _table_rows(entries: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "size KB", "latency ms (median / p90)", *SUMMARY_KEYS, "AP vs float"]
    rows = []
    for e in entries:
        lat = e.get("latency")
        size = e.get("bytes")
        rows.append(
            [
                e["variant"],
                "n/a" if size is None else f"{size / 1024:.1f}",
                "n/a" if not lat else f"{lat['median_ms']:.2f} / {lat['p90_ms']:.2f}",
                *(_points(e["metrics"].get(k)) for k in SUMMARY_KEYS),
                _delta(e.get("delta_to_float", {}).get("AP")),
            ]
        )
    return header, rows


def _class_rows(entries: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    classes = sorted({k for e in entries for k in e["metrics"] if k.startswith(PER_CLASS_PREFIX)})
    header = ["class", *(e["variant"] for e in entries)]
    rows = [
        [c[len(PER_CLASS_PREFIX) :], *(_points(e["metrics"].get(c)) for e in entries)]
        for c in classes
    ]
    return header, rows


def _cost_rows(entries: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The evaluation cost of each variant (entries without ``cost`` are left out)."""
    header = [
        "variant",
        "images",
        "start-up s",
        "detector load s",
        "per image ms",
        "scoring s",
        "latency runs s",
        "total s",
    ]
    rows = []
    for e in entries:
        cost = e.get("cost")
        if not cost:
            continue
        per_image = cost.get("per_image_ms")
        rows.append(
            [
                e["variant"],
                str(cost["images"]),
                f"{cost['startup_seconds']:.1f}",
                f"{cost['load_seconds']:.1f}",
                "n/a" if per_image is None else f"{per_image:.1f}",
                f"{cost['scoring_seconds']:.1f}",
                f"{cost['latency_seconds']:.1f}",
                f"{cost['total_seconds']:.1f}",
            ]
        )
    return header, rows


#: What the evaluation cost table means (both reports).
COST_NOTE = (
    "Start-up: the detection pass's wall time minus the images at their steady cost "
    "(pipeline and workers starting, the detector loading, first calls, reading and "
    "writing). Per image: decode + detect of the median image."
)


def render_markdown(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    quantization: QuantizationReport | None = None,
) -> str:
    """report.md: comparison table, per-class AP, blessing decision, worst int8 layers."""
    verdict = "BLESSED" if decision.blessed else "NOT BLESSED"
    parts = [
        "# Evaluation",
        "",
        f"COCO metrics in AP points (x100), pycocotools; float baseline: {baseline or 'none'}; "
        "latency: interpreter invoke, 1 thread.",
        "",
        markdown_table(*_table_rows(entries)),
        "",
        "## AP per class",
        "",
        markdown_table(*_class_rows(entries)),
        "",
        f"## Blessing: {verdict} ({decision.candidate})",
        "",
        f"Rule: {decision.metric} of {decision.candidate} >= {decision.metric} of "
        f"{decision.baseline or 'the float baseline'} - {decision.max_drop:g} points.",
        "",
        *(f"- {reason}" for reason in decision.reasons),
        "",
    ]
    header, rows = _cost_rows(entries)
    if rows:
        parts += ["## Evaluation cost", "", COST_NOTE, "", markdown_table(header, rows), ""]
    if quantization is not None:
        parts.append(quantization.markdown())
    return "\n".join(parts)


#: The CSS of both tasks' report.html.
REPORT_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.blessed { color: #176f2c; } .not-blessed { color: #a4161a; }
table.gallery td { vertical-align: top; text-align: center; }
figure { margin: 0; } figcaption { font-size: 0.85em; }
table.layer-errors td:nth-child(2), table.layer-errors td:nth-child(3),
table.layer-errors td:nth-child(7) { text-align: left; }
"""

_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>qatflow evaluation</title>
<style>{style}</style></head><body>
<h1>Evaluation</h1>
<p>COCO metrics in AP points (x100), pycocotools; float baseline: {baseline};
latency: interpreter invoke, 1 thread.</p>
{table}
<h2>AP per class</h2>
{classes}
<h2 class="{css}">Blessing: {verdict} ({candidate})</h2>
<p>{rule}</p>
<ul>{reasons}</ul>
{cost}
{layers}
{gallery}
</body></html>
"""


def _cost_html(entries: Sequence[Mapping[str, Any]]) -> str:
    header, rows = _cost_rows(entries)
    if not rows:
        return ""
    return f"<h2>Evaluation cost</h2>\n<p>{html.escape(COST_NOTE)}</p>\n" + html_table(header, rows)


def render_html(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    gallery_html: str = "",
    quantization: QuantizationReport | None = None,
) -> str:
    """report.html: the same content as report.md, self-contained, and ``gallery_html``
    (the most different images, :func:`model_maker.core.gallery.detection_gallery`)."""
    rule = (
        f"Rule: {decision.metric} of {decision.candidate} >= {decision.metric} of "
        f"{decision.baseline or 'the float baseline'} - {decision.max_drop:g} points."
    )
    return _HTML.format(
        style=REPORT_STYLE,
        baseline=html.escape(baseline or "none"),
        table=html_table(*_table_rows(entries)),
        classes=html_table(*_class_rows(entries)),
        css="blessed" if decision.blessed else "not-blessed",
        verdict="BLESSED" if decision.blessed else "NOT BLESSED",
        candidate=html.escape(decision.candidate),
        rule=html.escape(rule),
        reasons="".join(f"<li>{html.escape(r)}</li>" for r in decision.reasons),
        cost=_cost_html(entries),
        layers=quantization.html() if quantization is not None else "",
        gallery=gallery_html,
    )


def write_reports(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    output_dir: str,
    gallery_html: str = "",
    *,
    quantization: QuantizationReport | None = None,
) -> dict[str, str]:
    """Write metrics.json, report.md, report.html (with ``gallery_html``) and
    blessing.json, and copy ``quantization``'s files; return their paths.

    Raises:
      OSError: a file cannot be written.
    """
    document = metrics_document(entries, baseline, decision.candidate, decision.to_dict())
    contents = {
        REPORT_MD: render_markdown(entries, baseline, decision, quantization),
        REPORT_HTML: render_html(entries, baseline, decision, gallery_html, quantization),
        BLESSING_FILE: json.dumps(decision.to_dict(), indent=2),
    }
    if quantization is not None:
        document = quantization.add_summary(document)
    contents[METRICS_FILE] = json.dumps(document, indent=2)
    files = write_files(output_dir, contents)
    return {**files, **(quantization.copy_files(output_dir) if quantization else {})}


def write_files(output_dir: str, contents: Mapping[str, str]) -> dict[str, str]:
    """Write ``name -> text`` into ``output_dir`` (created); return ``name -> path``."""
    # deferred: TensorFlow takes seconds to import; only this path needs it
    import tensorflow as tf

    gfile = tf.io.gfile
    gfile.makedirs(output_dir)
    paths = {}
    for name, text in contents.items():
        path = os.path.join(output_dir, name)
        with gfile.GFile(path, "w") as fh:
            fh.write(text)
        paths[name] = path
    return paths


def model_label_names(path: str) -> dict[int, str] | None:
    """Category id (1-based) -> name from the labels packed in a TFLite file's metadata.

    None when the file carries no metadata or no label file (then the ground
    truth's names are used).
    """
    labels = read_labels(fileio.read_bytes(path))
    return {i + 1: name for i, name in enumerate(labels)} if labels else None


def check_label_names(
    variant: str, model_names: Mapping[int, str] | None, data_names: Mapping[int, str]
) -> list[str]:
    """Where a model's embedded labels disagree with the data's (one line per class id)."""
    if not model_names:
        return []
    return [
        f"{variant}: class id {i} is {model_names.get(i)!r} in the model, "
        f"{data_names.get(i)!r} in the data"
        for i in sorted(set(model_names) | set(data_names))
        if model_names.get(i) != data_names.get(i)
    ]


def variants_from_manifest(
    tflite_dir: str, num_threads: int = 1, only: Sequence[str] = ()
) -> list[Variant]:
    """One :class:`Variant` per manifest entry (all, or those named in ``only``)."""

    out = []
    for entry in read_manifest(tflite_dir):
        if only and entry["variant"] not in only:
            continue
        model_input = entry.get("input") or {}
        anchors = entry.get("anchors_file")
        path = os.path.join(tflite_dir, entry["file"])
        factory = TFLiteDetectorFactory(
            path,
            num_threads=num_threads,
            preprocessing=Preprocessing(
                mean=model_input.get("mean", 0.0), std=model_input.get("std", 1.0)
            ),
            anchors_file=os.path.join(tflite_dir, anchors) if anchors else None,
            nms=manifest_nms(entry),
        )
        out.append(Variant(entry["variant"], factory, path))
    return out
