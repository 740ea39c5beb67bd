"""The ingestion pipeline on Apache Beam: read, decode, validate, encode, write per split.

Usable without TFX::

    result = ingest(IngestOptions(format="voc", input="raccoon", output="out"),
                    beam_pipeline_args=["--direct_num_workers=2"])

The driver only lists files (and parses a COCO JSON, which is one file) and
hands the list to the workers through batch files in the staging folder (not
``beam.Create`` of the items, which embeds them all in the pipeline); reading
annotations, decoding and checking images and encoding records run as
Beam transforms, so the same code runs on the DirectRunner (several processes
with ``--direct_num_workers=N``), on a ``dask.distributed`` cluster
(``--runner=apache_beam.runners.dask.dask_runner.DaskRunner
--dask_client_address=tcp://HOST:PORT``) and, given the usual
``beam_pipeline_args``, on Dataflow, Flink or Spark. The pipeline is one chain
ending in one step and writes its shards through :mod:`model_maker.core.beam_io`
(not Beam's file sinks, which lose records on the DaskRunner); that step
publishes them only when every shard holds the records that went in and, for
inputs the driver lists, every listed image came out. Records stream from
reader to writer: with ``num_shards=0`` (the default) no step holds more than
one image at a time (the DaskRunner holds one partition's worth, 128 elements
by default, ``--dask_partition_size`` sets it). No step gathers the per-image
metadata either: the writer appends each image's summary (ids, boxes, issues) to
a side file of its bundle, the last step receives only token counts per shard
and side file, and streams the summaries back from the files, sorted on disk
(:mod:`model_maker.core.data.summary_files`), into the ground-truth JSONs and
stats.json; it keeps the counts, the issues and one file name per image. A fixed
``num_shards`` groups each shard's records before writing them (as Beam's
WriteToTFRecord does), so memory then grows.
Errors found in the data stop the run after the pipeline, with the first
one's message (stats.json lists all of them).

Outputs in ``output``: ``Split-<name>/data_tfrecord-*.gz``, ``label_map.json``,
``<split>_annotations.json`` (COCO ground truth with the records' ids) and
``stats.json`` (counts per split and class, every repair and skip; for
classification data also the imbalanced splits and the classes a split lacks,
which are logged as warnings too).

Inputs and output may be local paths or any URI an installed Beam filesystem
handles (``gs://``, ``s3://`` ...): the driver and the transforms read and write
through ``fileio``, the record files through Beam's TFRecord IO.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import apache_beam as beam

from model_maker.core import beam_io
from model_maker.core.beam_io import (
    ShardError,
    ShardLayout,
    check_shards,
    count_written,
    publish_shards,
    write_shards,
)
from model_maker.core.beam_spool import spooled_items
from model_maker.core.data import (
    coco,
    csv_format,
    fileio,
    folder,
    summary,
    summary_files,
    tfrecord,
    voc,
)
from model_maker.core.data.labels import LabelMap
from model_maker.core.data.options import FORMATS, IngestOptions  # noqa: F401 - API
from model_maker.core.data.process import (
    ImageSummary,
    ProcessSettings,
    choose_split,
    process_image,
    summarize_record,
)
from model_maker.core.data.records import RecordError, decode_example
from model_maker.core.data.source import NOT_STRICT, Issue, SourceImage
from model_maker.core.errors import DataError, UsageError

LOG = logging.getLogger("qatflow.ingest")
RECORD_PREFIX = "data_tfrecord"
#: Temporary record shards, inside the (staging) output folder; removed by the commit.
SHARD_TEMP = ".shards-temp"
#: Where a run writes before its outputs are moved into place (inside the output folder).
STAGING = ".ingest-staging"
#: A failed run's stats.json, kept in the output folder for the user to read.
FAILED_STATS = "failed-stats.json"
#: Where the driver spools the items it listed for the workers (in the staging folder).
ITEMS_SPOOL = ".items"
PROGRESS_EVERY = 500
#: zlib level of the gzip record shards: 0 stores them uncompressed inside gzip framing.
#: Why: a record is almost all JPEG or PNG bytes, compressed already. zlib's default
#: level made the shards 2.4% smaller and cost half of ingestion's CPU time (0.8 ms
#: per demo image); readers see the same ``.gz`` files (TFX's ``tfrecords_gzip``).
RECORD_COMPRESSION_LEVEL = 0


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest`` wrote.

    Attributes:
      output: the output folder.
      splits: split names, in order.
      label_map: the classes and their ids.
      images: images written per split.
      boxes: boxes written per split.
      issues: every repair and skip.
      stats: the content of stats.json.
    """

    output: str
    splits: tuple[str, ...]
    label_map: LabelMap
    images: dict[str, int]
    boxes: dict[str, int]
    issues: tuple[Issue, ...]
    stats: dict

    def record_pattern(self, split: str) -> str:
        return fileio.join(self.output, f"Split-{split}", f"{RECORD_PREFIX}-*.gz")

    def annotations_path(self, split: str) -> str:
        return fileio.join(self.output, summary.annotations_file(split))

    @property
    def label_map_path(self) -> str:
        return fileio.join(self.output, summary.LABEL_MAP_FILE)

    @property
    def stats_path(self) -> str:
        return fileio.join(self.output, summary.STATS_FILE)


@dataclass(frozen=True)
class _Plan:
    """What the driver found before the Beam job starts."""

    splits: tuple[str, ...]
    items: tuple = ()
    label_map: LabelMap | None = None
    record_files: Mapping[str, Sequence[str]] = field(default_factory=dict)
    issues: tuple[Issue, ...] = ()
    absent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    folders: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Passed:
    """A validated record written unchanged."""

    split: str
    record: bytes
    summary: ImageSummary


def _check(options: IngestOptions) -> None:
    # The rules of the settings hold already (IngestOptions validates itself);
    # what a run needs beyond them is where to read and where to write.
    if not options.input:
        raise UsageError("ingest: give the input (--input PATH)")
    if not options.output:
        raise UsageError("ingest: give the output folder (--output DIR)")


def _plan(options: IngestOptions) -> _Plan:
    fixed = tuple(options.split_files)
    ratio_splits = tuple(options.split_ratios)
    if options.format == "coco":
        index = coco.read_coco_splits(
            options.input, options.annotations, options.split_files, options.split_image_dirs
        )
        return _Plan(fixed or ratio_splits, index.images, index.label_map)
    if options.format == "voc":
        items = voc.list_voc(options.input, options.split_files)
        return _Plan(fixed or ratio_splits, tuple(items))
    if options.format == "folder" and options.split_image_dirs:
        index = folder.read_split_folders(options.input, options.split_image_dirs)
        issues = tuple(
            Issue("unreadable_image", path, "not an image file name", split)
            for path, split in index.ignored
        )
        return _Plan(
            tuple(options.split_image_dirs),
            index.images,
            index.label_map,
            issues=issues,
            absent=index.absent,
            folders=index.folders,
        )
    if options.format == "folder":
        label_map, images, ignored = folder.read_folders(options.input)
        issues = tuple(
            Issue("unreadable_image", path, "not an image file name") for path in ignored
        )
        return _Plan(ratio_splits, tuple(images), label_map, issues=issues)
    if options.format == "csv":
        rows = csv_format.read_csv(options.input)
        # The hash split's splits when some row leaves the split to it, then those the
        # split column names, the config's order first.
        used = [s for s in ratio_splits if rows.hashed or s in rows.splits]
        splits = tuple(used + [s for s in rows.splits if s not in used])
        return _Plan(splits, rows.images, rows.label_map, issues=rows.issues)
    files = tfrecord.list_record_files(options.input, options.split_files)
    splits = tuple(s for s in files if s) or ratio_splits
    label_map = tfrecord.find_label_map(options.input) if fileio.isdir(options.input) else None
    return _Plan(splits, (), label_map, files)


# --- Beam transforms (module level so that worker processes can unpickle them) -------------


def _parse_voc(item: voc.VocItem):
    try:
        yield voc.parse_voc(item)
    except DataError as exc:
        yield ImageSummary(
            item.image_id, item.split, None, (), (Issue("error", item.xml_path, str(exc)),)
        )


def _label_names(element) -> list[str]:
    if isinstance(element, SourceImage):
        return [b.label for b in element.boxes]
    return []


class _ValidateRecord(beam.DoFn):
    """(file, serialized) -> _Passed, SourceImage (rewrite) or ImageSummary (invalid)."""

    def __init__(self, split: str, ratios: Mapping[str, float], label_map, rewrite: bool):
        super().__init__()
        self.split = split
        self.ratios = dict(ratios)
        self.label_map = label_map
        self.rewrite = rewrite

    def process(self, element):
        path, serialized = element
        try:
            example = tfrecord.validate_record(serialized, self.label_map, not self.rewrite)
        except RecordError as exc:
            try:
                ident = f"record image/source_id {decode_example(serialized).source_id!r}"
            except RecordError:
                ident = f"record of {len(serialized)} bytes"
            split = self.split or ""
            issue = Issue("invalid_record", f"{path}: {ident}", str(exc), split)
            yield ImageSummary(0, split, None, (), (issue,))
            return
        origin = f"{path}: record image/source_id {example.source_id!r}"
        image_id = tfrecord.image_id_of(example.source_id)
        names = {c.id: c.name for c in self.label_map.classes} if self.label_map else {}
        source = tfrecord.to_source(example, origin, self.split, names)
        split = choose_split(source, self.ratios)
        if self.rewrite:
            yield source
        elif not example.source_id.isdigit():
            message = (
                f"{origin}: image/source_id is not an integer, so the COCO ground truth cannot "
                "use it (re-encode with --rewrite, which gives integer ids)"
            )
            yield ImageSummary(image_id, split, None, (), (Issue("error", origin, message, split),))
        else:
            yield _Passed(split, serialized, summarize_record(example, image_id, split))


def _record_pairs(element) -> list[tuple[int, str]]:
    if isinstance(element, _Passed):
        return list(element.summary.label_texts)
    if isinstance(element, SourceImage):
        return [(b.class_id, b.label) for b in element.boxes]
    return []


class _Process(beam.DoFn):
    """Source element -> ``(split, record or None, ImageSummary)``: one element per image.

    One output, not a record output plus a tagged summary output: the DaskRunner
    merges a ParDo's tagged outputs into one collection.
    """

    def __init__(self, settings: ProcessSettings):
        super().__init__()
        self.settings = settings
        self.written = beam.metrics.Metrics.counter("qatflow", "records_written")
        self.issues = beam.metrics.Metrics.counter("qatflow", "issues")
        self.count = 0

    def process(self, element, label_map: LabelMap):
        self.count += 1
        if self.count % PROGRESS_EVERY == 0:
            LOG.info("%d images processed by this worker", self.count)
        if isinstance(element, ImageSummary):
            image_summary, record = element, None
        elif isinstance(element, _Passed):
            image_summary, record = element.summary, element.record
        else:
            record, image_summary = process_image(element, label_map, self.settings)
        if record is not None:
            self.written.inc()
        self.issues.inc(len(image_summary.issues))
        yield (image_summary.split, record, image_summary)


def _listed(p, items: Sequence, stage: str, label: str):
    """The PCollection of ``items`` (listed by the driver), read from spool files."""
    return spooled_items(p, items, fileio.join(stage, ITEMS_SPOOL), label)


def _layout(output: str, splits: Sequence[str], num_shards: int) -> ShardLayout:
    """Where the record shards go: ``Split-<name>/data_tfrecord-SSSSS-of-NNNNN.gz``."""
    prefixes = {s: fileio.join(output, f"Split-{s}", RECORD_PREFIX) for s in splits}
    return ShardLayout(
        prefixes,
        fileio.join(output, SHARD_TEMP),
        ".gz",
        "tfrecord",
        num_shards,
        compression_level=RECORD_COMPRESSION_LEVEL,
    )


def _write_summaries(
    counts, output, splits, label_map, extra_issues, info, derive, num_shards, expected
):
    """The pipeline's last step: check the record shards against what went in, write the
    ground truth, label_map.json and stats.json from the summaries in the writer's side
    files (streamed, see :mod:`summary_files`), then publish the shards.

    ``counts``: the :class:`beam_io.WrittenCounts` of the writer's tokens, which carry
    no summary: memory here grows with the shards, not the images."""
    if expected is not None and counts.elements != expected:
        raise ShardError(
            f"{expected} images went into the pipeline but {counts.elements} came out of it "
            "(the runner lost or duplicated some); nothing was published"
        )
    layout = _layout(output, splits, num_shards)
    check_shards(counts, layout)  # before reading the side files the counts name
    derived = None if derive else label_map
    files = sorted(counts.meta_files)
    summary_files.write_outputs_from_files(output, files, derived, splits, extra_issues, info)
    publish_shards(counts, layout)
    return counts.elements


DIRECT_RUNNERS = (None, "DirectRunner", "direct", "SwitchingDirectRunner")


def make_pipeline(beam_pipeline_args: Sequence[str] = ()) -> beam.Pipeline:
    """A Beam pipeline for ``beam_pipeline_args``.

    Without ``--runner`` (or with DirectRunner) the batch engine of the
    DirectRunner (FnApiRunner) is used directly: Beam's DirectRunner would
    first try to download the Prism runner binary, and nothing may be
    downloaded at run time. ``--direct_num_workers=N`` (N > 1) defaults to
    ``--direct_running_mode=multi_processing``. Any other runner is used as given.
    """
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        StandardOptions,
    )

    args = list(beam_pipeline_args)
    options = PipelineOptions(args)
    direct = options.view_as(DirectOptions)
    if direct.direct_num_workers != 1 and not any("direct_running_mode" in a for a in args):
        direct.direct_running_mode = "multi_processing"
    if options.view_as(StandardOptions).runner not in DIRECT_RUNNERS:
        return beam.Pipeline(options=options)
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    )
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)


def _publish(stage: str, output: str, splits: Sequence[str]) -> None:
    """Replace the ingestion outputs in ``output`` by those of ``stage``; stats.json last,
    so that a folder with stats.json holds one complete run."""
    # Stale shards of an earlier run would be read as part of this one.
    old = fileio.glob(fileio.join(output, "Split-*", f"{RECORD_PREFIX}-*"))
    for name in (summary.STATS_FILE, summary.LABEL_MAP_FILE, FAILED_STATS):
        if fileio.isfile(fileio.join(output, name)):
            old.append(fileio.join(output, name))
    old += fileio.glob(fileio.join(output, f"*{summary.ANNOTATIONS_SUFFIX}"))
    for path in old:
        fileio.remove(path)
    for split in splits:
        fileio.makedirs(fileio.join(output, f"Split-{split}"))
    stats = fileio.join(stage, summary.STATS_FILE)
    files = [f for f in fileio.walk_files(stage) if f != stats] + [stats]
    for path in files:
        target = fileio.join(output, path[len(stage) :].lstrip("/"))
        fileio.makedirs(target.rsplit("/", 1)[0])
        fileio.rename(path, target)
    fileio.remove_tree(stage)


def _abandon(stage: str, output: str) -> None:
    """Remove ``stage``; its stats.json, when the run got that far, becomes
    ``output``/failed-stats.json."""
    stats = fileio.join(stage, summary.STATS_FILE)
    if fileio.isfile(stats):
        fileio.rename(stats, fileio.join(output, FAILED_STATS))
    fileio.remove_tree(stage)


def _build(p, options: IngestOptions, plan: _Plan) -> None:
    settings = ProcessSettings.of(options)
    if options.format == "tfrecord":
        parts = []
        for key, files in plan.record_files.items():
            parts.append(
                p
                | f"ListRecords[{key}]" >> beam.Create(list(files))
                | f"ReadRecords[{key}]" >> beam.io.ReadAllFromTFRecord(with_filename=True)
                | f"Validate[{key}]"
                >> beam.ParDo(
                    _ValidateRecord(
                        key, options.split_ratios, plan.label_map, options.rewrite_tfrecords
                    )
                )
            )
        sources = parts | "MergeSplits" >> beam.Flatten()
    elif options.format == "voc":
        listed = _listed(p, plan.items, options.output, "ListAnnotations")
        sources = listed | "ParseVOC" >> beam.FlatMap(_parse_voc)
    else:
        sources = _listed(p, plan.items, options.output, "ListImages")

    derive = plan.label_map is None
    if not derive:
        label_map = p | "LabelMap" >> beam.Create([plan.label_map])
    elif options.format == "voc":
        label_map = (
            sources
            | "ClassNames" >> beam.FlatMap(_label_names)
            | "UniqueNames" >> beam.Distinct()
            | "CollectNames" >> beam.combiners.ToList()
            | "NumberNames" >> beam.Map(LabelMap.from_names)
        )
        derive = False
    else:
        label_map = (
            sources
            | "ClassPairs" >> beam.FlatMap(_record_pairs)
            | "UniquePairs" >> beam.Distinct()
            | "CollectPairs" >> beam.combiners.ToList()
            | "PairsToMap" >> beam.Map(lambda pairs: summary.label_map_from_pairs(pairs)[0])
        )

    processed = sources | "DecodeCheckEncode" >> beam.ParDo(
        _Process(settings), label_map=beam.pvalue.AsSingleton(label_map)
    )
    written = write_shards(
        processed,
        _layout(options.output, plan.splits, options.num_shards),
        label="Write",
        meta_line=summary_files.summary_line,
    )
    info = {"format": options.format, "input": fileio.abspath(options.input)}
    # Every image gives one summary: the count to check when the driver knows it.
    expected = None if options.format == "tfrecord" else len(plan.items)
    # One chain to one last step: the DaskRunner runs only the last transform applied.
    # The summaries stay in the writer's side files; the tokens are counted per shard.
    _ = count_written(written, "CountWritten") | "Publish" >> beam.Map(
        _write_summaries,
        options.output,
        list(plan.splits),
        beam.pvalue.AsSingleton(label_map),
        list(plan.issues),
        info,
        derive,
        options.num_shards,
        expected,
    )


def _beam_error(exc: Exception) -> str | None:
    # Beam re-raises a worker's exception inside its own; recover our one-line message.
    match = re.search(r"DataError: (.+?)(?: \[while running|\n|$)", str(exc))
    return match.group(1) if match else None


def _result(output: str, splits: tuple[str, ...]) -> IngestResult:
    stats = json.loads(fileio.read_text(fileio.join(output, summary.STATS_FILE)))
    issues = tuple(Issue(**i) for i in stats["issues"])
    return IngestResult(
        output=output,
        splits=splits,
        label_map=LabelMap.load(fileio.join(output, summary.LABEL_MAP_FILE)),
        images={s: stats["splits"][s]["images"] for s in splits},
        boxes={s: stats["splits"][s]["boxes"] for s in splits},
        issues=issues,
        stats=stats,
    )


def class_warnings(
    stats: Mapping,
    absent: Mapping[str, Sequence[str]] | None = None,
    folders: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per imbalanced split and one per split with classes without images
    (stats.json's ``imbalance`` and ``empty_classes``). ``absent`` (split -> classes
    without image files in the split's folder) and ``folders`` (split -> that folder)
    say which classes were missing from the input itself."""
    absent, folders = absent or {}, folders or {}
    lines = []
    for split, entry in stats.get("imbalance", {}).items():
        lines.append(
            f"split {split}: class imbalance: {entry['max_class']} has {entry['max']} images, "
            f"{entry['min_class']} {entry['min']} ({entry['ratio']:g}x, more than "
            f"{summary.IMBALANCE_RATIO:g}x)"
        )
    for split, names in stats.get("empty_classes", {}).items():
        line = f"split {split}: no images of class(es) {', '.join(names)}"
        missing = [n for n in names if n in absent.get(split, ())]
        if missing:
            line += f" ({', '.join(missing)}: no image files in {folders.get(split, 'its folder')})"
        lines.append(line)
    return lines


def _skipped_kinds(stats: Mapping) -> str:
    counts = stats["issue_counts"]
    return ", ".join(f"{n} x {kind}" for kind, n in counts.items()) or "no issues"


def _refusal(result: IngestResult, options: IngestOptions, plan: _Plan, kept: str) -> str:
    """Why the run's output must not be used ("" when it may): an error found in the
    data, no image written, detection data without a box, or (``strict``) any issue.
    ``kept``: where the run's stats.json will be kept (named in the message)."""
    see = f"see {kept}"
    errors = [i for i in result.issues if i.fatal]
    if not errors:
        images = sum(result.images.values())
        if not images:
            found = (
                f"no readable records in {options.input}"
                if options.format == "tfrecord"
                else f"{len(plan.items)} images listed in {options.input}"
            )
            return f"no images to write: {found} ({_skipped_kinds(result.stats)}; {see})"
        classification = any(result.stats["splits"][s]["classes"] for s in result.splits)
        if not sum(result.boxes.values()) and not classification:
            return (
                f"no image has a box: {images} image{'s' if images > 1 else ''} written, all "
                f"without boxes ({_skipped_kinds(result.stats)}; {see}); detection training "
                "needs boxes (class-per-image data is the folder or csv format)"
            )
    if options.strict:
        errors += [i for i in result.issues if not i.fatal and i.kind not in NOT_STRICT]
    if not errors:
        return ""
    more = f"and {len(errors) - 1} more, " if len(errors) > 1 else ""
    prefix = "strict: " if not errors[0].fatal else ""
    return f"{prefix}{errors[0].message()} ({more}{see})"


def ingest(options: IngestOptions, beam_pipeline_args: Sequence[str] = ()) -> IngestResult:
    """Run the ingestion pipeline and return what it wrote.

    ``beam_pipeline_args`` pass through to Beam unchanged (``--runner``,
    ``--direct_num_workers``, Dataflow/Flink/Spark options); several DirectRunner
    workers default to ``multi_processing``.

    Everything is written to ``<output>/.ingest-staging`` first and moved into
    ``output`` only when the run succeeds (replacing an earlier run's outputs;
    stats.json last). A failed run changes nothing in ``output`` but one file: its
    stats.json, when it got that far, as ``failed-stats.json``.

    Raises:
      UsageError: bad options.
      DataError: input that cannot be ingested (naming the file and record), no
        image written, detection data where no image has a box, or, with
        ``strict``, the first repair or skip (failed-stats.json lists them all).
      ShardError: the shards do not hold the records that went in, or fewer or more
        images came out of the pipeline than the driver listed (a runner that loses
        or duplicates data); nothing is published then.
    """
    _check(options)
    plan = _plan(options)
    stage = fileio.join(options.output, STAGING)
    fileio.remove_tree(stage)  # left by a killed run
    failed = fileio.join(options.output, FAILED_STATS)
    if fileio.isfile(failed):
        fileio.remove(failed)
    for split in plan.splits:
        fileio.makedirs(fileio.join(stage, f"Split-{split}"))
    LOG.info(
        "ingesting %s from %s into %s (splits: %s)",
        options.format,
        options.input,
        options.output,
        ", ".join(plan.splits),
    )
    try:
        pipeline = make_pipeline(beam_pipeline_args)
        _build(pipeline, replace(options, output=stage), plan)
        beam_io.run(pipeline)
        fileio.remove_tree(fileio.join(stage, ITEMS_SPOOL))
        result = _result(stage, plan.splits)
    except BaseException as exc:
        _abandon(stage, options.output)
        message = _beam_error(exc) if not isinstance(exc, DataError) else None
        if message:
            raise DataError(message) from exc
        raise
    refusal = _refusal(result, options, plan, failed)
    if refusal:
        _abandon(stage, options.output)
        raise DataError(refusal)
    _publish(stage, options.output, plan.splits)
    result = replace(result, output=options.output)
    for split in plan.splits:
        LOG.info("split %s: %d images, %d boxes", split, result.images[split], result.boxes[split])
        if not result.images[split]:
            LOG.warning("split %s is empty (its shard holds no records)", split)
    for kind, count in result.stats["issue_counts"].items():
        LOG.warning("%d x %s (details in %s)", count, kind, result.stats_path)
    for line in class_warnings(result.stats, plan.absent, plan.folders):
        LOG.warning("%s", line)
    return result
