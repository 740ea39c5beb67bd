"""Evaluate a converted classifier set (and its Keras float model) on an Examples split.

:func:`evaluate_artifacts` is the one call the Evaluator component makes when
the TFLite set is a classifier's (``"task": "image_classification"`` in its
manifest); a notebook can call it with the same folders. Every variant of
the manifest runs through LiteRT on the eval split's images (prepared as the
dataloader's evaluation pipeline prepares them; uint8 inputs get the raw
pixels), the Keras float model of ``model_dir`` on the same images; each gets
:func:`~model_maker.image_classifier.evaluate.classification_metrics`
(top-1, top-5 with 5 classes or more, per-class accuracy, confusion matrix,
macro-F1), its file size and its latency (median / p90 of interpreter calls,
1 thread). The blessing is the detectors' rule on ``top1`` (or ``top5``):
``candidate >= baseline - max_drop points``. Written into ``output_dir``:
``metrics.json`` (:mod:`model_maker.core.metrics_document`), ``report.md``,
``report.html`` and ``blessing.json``; and ``predictions.json`` (every
variant's predicted class and its probability per eval image, in record
order) with ``gallery/<index>.jpg`` thumbnails of the images some variant
misclassifies (:mod:`model_maker.core.gallery`), the first of which
report.html shows with each variant's prediction. The set's
``layer_errors.json`` (per-layer int8 error, when the converter measured it)
is copied too and both reports list its worst layers, and the layers
``ptq_mixed`` kept float (:class:`~model_maker.core.quantization_report.QuantizationReport`).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from model_maker.core.data import fileio, folder
from model_maker.core.data.images import ImageReadError, load_image
from model_maker.core.data.records import decode_example
from model_maker.core.errors import DataError, UsageError
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.evaluation import (
    BLESSING_FILE,
    KERAS_FLOAT,
    REPORT_HTML,
    REPORT_MD,
    REPORT_STYLE,
    BlessingDecision,
    EvaluationResult,
    check_label_names,
    decide_blessing,
    decode_image,
    deltas,
    html_table,
    markdown_table,
    model_label_names,
    pick_baseline,
    size_bytes,
    write_files,
)
from model_maker.core.gallery import (
    GALLERY_DIR,
    GALLERY_IMAGES,
    PREDICTIONS_FILE,
    REPORT_IMAGES,
    ImageError,
    ReportImage,
    classification_report_html,
    misclassified_order,
    predictions_document,
    strict_json,
    top_predictions,
    write_thumbnail,
)
from model_maker.core.metrics_document import (
    CLASSIFICATION_KEYS,
    IMAGE_CLASSIFICATION,
    METRICS_FILE,
    PER_CLASS_ACCURACY_PREFIX,
    metrics_document,
)
from model_maker.core.quantization_report import QuantizationReport, read_quantization_report
from model_maker.core.tflite_manifest import read_manifest
from model_maker.core.tflite_metadata import read_labels
from model_maker.image_classifier.dataloader import DataLoader, InputOptions
from model_maker.image_classifier.evaluate import (
    classification_metrics,
    evaluate_tflite,
    tflite_latency,
    tflite_outputs,
)
from model_maker.image_classifier.model_io import load_trained_model

LOG = logging.getLogger("qatflow")

#: Classes needed for top-5.
TOP_K = 5


def _entry_size(entry: Mapping[str, Any]) -> int:
    shape = (entry.get("input") or {}).get("shape") or []
    if len(shape) != 4 or shape[1] != shape[2]:
        raise DataError(f"{entry['variant']}: expected a square [1, S, S, 3] input, got {shape}")
    return int(shape[1])


def _variant_entry(
    name: str, path: str, scores: Mapping[str, Any], classes: Sequence[str]
) -> dict[str, Any]:
    metrics: dict[str, float] = {key: scores[key] for key in CLASSIFICATION_KEYS if key in scores}
    for class_name, accuracy in zip(classes, scores["per_class_accuracy"], strict=True):
        if accuracy is not None:
            metrics[f"{PER_CLASS_ACCURACY_PREFIX}{class_name}"] = accuracy
    return {
        "variant": name,
        "file": os.path.basename(path.rstrip("/")) if path else "",
        "bytes": size_bytes(path),
        "latency": None,
        "num_images": scores["num_images"],
        "metrics": metrics,
        "confusion_matrix": scores["confusion_matrix"],
        "per_class_count": scores["per_class_count"],
    }


def _keras_outputs(
    model_dir: str, loader: DataLoader, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """(true class indices [N], logits [N, C]) of the Keras float model, eval order."""
    model, config = load_trained_model(model_dir)
    dataset = loader.gen_tf_dataset(
        InputOptions(image_size=config.image_size, batch_size=batch_size)
    )
    signature = [tf.TensorSpec([None, config.image_size, config.image_size, 3], tf.float32)]
    predict = tf.function(
        lambda images: model(images, training=False), input_signature=signature, autograph=False
    )
    true, logits = [], []
    for images, labels in dataset:
        logits.append(predict(images).numpy())
        true.append(labels.numpy())
    return np.concatenate(true), np.concatenate(logits)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (max subtracted)."""
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def evaluate_artifacts(
    examples_uri: str,
    tflite_dir: str,
    output_dir: str,
    options: EvaluateOptions = EvaluateOptions(metric="top1"),
    *,
    model_dir: str | None = None,
    beam_args: Sequence[str] = (),
) -> EvaluationResult:
    """Score every variant of ``tflite_dir`` (and the Keras model of ``model_dir``).

    Args:
      examples_uri: the Examples artifact (records of ``options.split``, ``label_map.json``).
      tflite_dir: the classifier TFLite set (``manifest.json`` and its files).
      output_dir: where ``metrics.json``, the reports and ``blessing.json`` go.
      options: blessing rule (``metric`` top1 or top5), latency runs, split scored.
      model_dir: the Trainer's Model artifact; its float model becomes the
        ``keras_float`` row and the preferred baseline.
      beam_args: accepted for the component's interface; the classifier
        evaluation runs in this process (one interpreter per variant).

    Also writes ``predictions.json`` and the ``gallery/`` thumbnails of the
    misclassified images (see the module doc).

    Raises:
      DataError: the files' labels are not the Examples' classes, or the
        number of classes differs.
      UsageError: a blessing metric other than top1/top5, or a file whose
        number of classes is not the split's.
    """
    del beam_args  # one process: eval splits of classifiers are small enough
    if options.metric not in ("top1", "top5"):
        raise UsageError(
            f"evaluate.metric {options.metric!r}: a classifier is blessed on top1 or top5"
        )
    loader = DataLoader.from_examples(examples_uri, options.split)
    classes = loader.index_to_label
    data_names = {i + 1: name for i, name in enumerate(classes)}
    entries: list[dict[str, Any]] = []
    predictions: dict[str, list[list[float]]] = {}
    labels: np.ndarray | None = None
    if model_dir:
        LOG.info("evaluating %s on %d %s images", KERAS_FLOAT, loader.size, options.split)
        labels, logits = _keras_outputs(model_dir, loader)
        scores = classification_metrics(labels, logits, loader.num_classes, TOP_K)
        entries.append(_variant_entry(KERAS_FLOAT, model_dir, scores, classes))
        predictions[KERAS_FLOAT] = top_predictions(_softmax(logits), ranked_by=logits)
    for entry in read_manifest(tflite_dir):
        name, path = entry["variant"], os.path.join(tflite_dir, entry["file"])
        mismatches = check_label_names(name, model_label_names(path), data_names)
        if mismatches:
            raise DataError(
                "the TFLite set's labels are not the Examples' classes: " + "; ".join(mismatches)
            )
        LOG.info("evaluating %s", name)
        content = fileio.read_bytes(path)
        dataset = loader.gen_tf_dataset(InputOptions(image_size=_entry_size(entry), batch_size=16))
        outputs = tflite_outputs(content, dataset, num_classes=loader.num_classes)
        labels, probabilities = outputs.labels, outputs.probabilities
        scores = classification_metrics(labels, probabilities, loader.num_classes, TOP_K)
        row = _variant_entry(name, path, scores, classes)
        row["input_dtype"] = outputs.input_dtype
        if options.latency_runs > 0:
            stats = tflite_latency(content, runs=options.latency_runs)
            row["latency"] = dataclasses.asdict(stats)
        entries.append(row)
        predictions[name] = top_predictions(probabilities)
    quantization = read_quantization_report(tflite_dir)
    by_name = {e["variant"]: e["metrics"] for e in entries}
    baseline = pick_baseline(by_name, options.baseline)
    for row in entries:
        row["delta_to_float"] = deltas(row["metrics"], by_name.get(baseline))
        if quantization is not None:
            row.update(quantization.mixed.get(row["variant"], {}))
    decision = decide_blessing(by_name, options)
    document, gallery_html = _gallery(loader, labels, predictions, baseline, output_dir)
    files = write_reports(
        entries,
        baseline,
        decision,
        classes,
        output_dir,
        gallery_html=gallery_html,
        quantization=quantization,
    )
    files.update(write_files(output_dir, {PREDICTIONS_FILE: strict_json(document)}))
    if any(image["thumbnail"] for image in document["images"]):
        files[GALLERY_DIR] = os.path.join(output_dir, GALLERY_DIR)
    return EvaluationResult(entries, baseline, decision, files)


# --- per-image predictions and thumbnails -------------------------------------------------


def _eval_records(files: Sequence[str]):
    """The split's records in the order of the evaluation dataset (files in order)."""
    compression = "GZIP" if str(files[0]).endswith(".gz") else ""
    for serialized in tf.data.TFRecordDataset(list(files), compression_type=compression):
        yield decode_example(serialized.numpy())


def _gallery(
    loader: DataLoader,
    labels: np.ndarray | None,
    predictions: Mapping[str, list[list[float]]],
    baseline: str,
    output_dir: str,
) -> tuple[dict[str, Any], str]:
    """``predictions.json``'s content and the report section; writes the thumbnails.

    One pass over the split's records: file names and labels of every image,
    a thumbnail of the first :data:`~model_maker.core.gallery.GALLERY_IMAGES`
    misclassified ones.

    Raises:
      DataError: a record's label is not the one the evaluation saw at its index
        (the predictions would not be aligned with the images).
    """
    labels = np.zeros(0, np.int64) if labels is None else labels
    order = misclassified_order(labels.tolist(), predictions)
    wanted, keep = set(order[:GALLERY_IMAGES]), set(order[:REPORT_IMAGES])
    if wanted:
        fileio.makedirs(fileio.join(output_dir, GALLERY_DIR))
    index_of = {c.id: i for i, c in enumerate(loader.label_map.classes)}
    images: list[dict[str, Any]] = []
    kept: dict[int, ReportImage] = {}
    for index, example in enumerate(_eval_records(loader.files) if predictions else ()):
        label = index_of.get(example.class_label, -1)
        if index >= len(labels) or label != labels[index]:
            raise DataError(
                f"record {index} ({example.filename}): label {label} is not the evaluated one"
            )
        image = {"index": index, "file_name": example.filename, "label": label, "thumbnail": None}
        if index in wanted:
            try:
                image["thumbnail"], small = write_thumbnail(
                    index, example.encoded, output_dir, index in keep
                )
            except ImageError as exc:
                LOG.warning("no thumbnail of %s: %s", example.filename, exc)
                small = None
            if small is not None:
                kept[index] = small
        images.append(image)
    document = predictions_document(loader.index_to_label, baseline, images, predictions)
    return document, classification_report_html(document, kept, order)


# --- reports ----------------------------------------------------------------------------


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}"


def _table(entries: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    keys = [k for k in CLASSIFICATION_KEYS if any(k in e["metrics"] for e in entries)]
    header = ["variant", "size KB", "latency ms (median / p90)", *keys, "top1 vs float"]
    rows = []
    for e in entries:
        lat, size = e.get("latency"), e.get("bytes")
        delta = e.get("delta_to_float", {}).get("top1")
        rows.append(
            [
                e["variant"],
                "n/a" if size is None else f"{size / 1024:.1f}",
                "n/a" if not lat else f"{lat['median_ms']:.2f} / {lat['p90_ms']:.2f}",
                *(_points(e["metrics"].get(k)) for k in keys),
                "" if delta is None else f"{delta * 100:+.2f}",
            ]
        )
    return header, rows


def _class_table(
    entries: Sequence[Mapping[str, Any]], classes: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    counts = entries[0].get("per_class_count") if entries else None
    header = ["class", "images", *(e["variant"] for e in entries)]
    rows = [
        [
            name,
            str(counts[i]) if counts else "",
            *(_points(e["metrics"].get(f"{PER_CLASS_ACCURACY_PREFIX}{name}")) for e in entries),
        ]
        for i, name in enumerate(classes)
    ]
    return header, rows


def _confusion_table(
    entry: Mapping[str, Any], classes: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    header = ["true \\ predicted", *classes]
    rows = [
        [name, *(str(c) for c in row)]
        for name, row in zip(classes, entry["confusion_matrix"], strict=True)
    ]
    return header, rows


def _rule(decision: BlessingDecision) -> str:
    return (
        f"Rule: {decision.metric} of {decision.candidate} >= {decision.metric} of "
        f"{decision.baseline or 'the float baseline'} - {decision.max_drop:g} points."
    )


def render_markdown(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    classes: Sequence[str],
    quantization: QuantizationReport | None = None,
) -> str:
    """report.md: comparison table, per-class accuracy, confusion matrices, blessing,
    worst int8 layers."""
    verdict = "BLESSED" if decision.blessed else "NOT BLESSED"
    parts = [
        "# Evaluation (image classification)",
        "",
        f"Accuracy in points (x100); float baseline: {baseline or 'none'}; "
        "latency: interpreter invoke, 1 thread.",
        "",
        markdown_table(*_table(entries)),
        "",
        "## Accuracy per class",
        "",
        markdown_table(*_class_table(entries, classes)),
        "",
        "## Confusion matrices (rows: true class, columns: predicted)",
        "",
    ]
    for entry in entries:
        parts += [
            f"### {entry['variant']}",
            "",
            markdown_table(*_confusion_table(entry, classes)),
            "",
        ]
    parts += [
        f"## Blessing: {verdict} ({decision.candidate})",
        "",
        _rule(decision),
        "",
        *(f"- {reason}" for reason in decision.reasons),
        "",
    ]
    if quantization is not None:
        parts.append(quantization.markdown())
    return "\n".join(parts)


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>qatflow evaluation</title>
<style>{style}</style></head><body>
<h1>Evaluation (image classification)</h1>
<p>Accuracy in points (x100); float baseline: {baseline}; latency: interpreter invoke, 1 thread.</p>
{table}
<h2>Accuracy per class</h2>
{classes}
<h2>Confusion matrices (rows: true class, columns: predicted)</h2>
{confusion}
<h2 class="{css}">Blessing: {verdict} ({candidate})</h2>
<p>{rule}</p>
<ul>{reasons}</ul>
{layers}
{gallery}
</body></html>
"""


def render_html(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    classes: Sequence[str],
    gallery_html: str = "",
    quantization: QuantizationReport | None = None,
) -> str:
    """report.html: the same content as report.md, self-contained, and ``gallery_html``
    (the misclassified images, :func:`model_maker.core.gallery.classification_report_html`)."""
    confusion = "".join(
        f"<h3>{html.escape(e['variant'])}</h3>" + html_table(*_confusion_table(e, classes))
        for e in entries
    )
    return _HTML.format(
        style=REPORT_STYLE,
        baseline=html.escape(baseline or "none"),
        table=html_table(*_table(entries)),
        classes=html_table(*_class_table(entries, classes)),
        confusion=confusion,
        css="blessed" if decision.blessed else "not-blessed",
        verdict="BLESSED" if decision.blessed else "NOT BLESSED",
        candidate=html.escape(decision.candidate),
        rule=html.escape(_rule(decision)),
        reasons="".join(f"<li>{html.escape(r)}</li>" for r in decision.reasons),
        layers=quantization.html() if quantization is not None else "",
        gallery=gallery_html,
    )


def write_reports(
    entries: Sequence[Mapping[str, Any]],
    baseline: str,
    decision: BlessingDecision,
    classes: Sequence[str],
    output_dir: str,
    *,
    gallery_html: str = "",
    quantization: QuantizationReport | None = None,
) -> dict[str, str]:
    """Write metrics.json, report.md, report.html (with ``gallery_html``) and
    blessing.json, and copy ``quantization``'s files; return their paths.

    Raises:
      OSError: a file cannot be written.
    """
    document = metrics_document(
        entries,
        baseline,
        decision.candidate,
        decision.to_dict(),
        task=IMAGE_CLASSIFICATION,
        classes=classes,
    )
    files = write_files(
        output_dir,
        {
            METRICS_FILE: json.dumps(
                quantization.add_summary(document) if quantization else document, indent=2
            ),
            REPORT_MD: render_markdown(entries, baseline, decision, classes, quantization),
            REPORT_HTML: render_html(
                entries, baseline, decision, classes, gallery_html, quantization
            ),
            BLESSING_FILE: json.dumps(decision.to_dict(), indent=2),
        },
    )
    return {**files, **(quantization.copy_files(output_dir) if quantization else {})}


# --- any classifier file on a folder of class folders (qatflow evaluate-tflite) ---------


def is_classifier_file(path: str) -> bool:
    """Whether a ``.tflite`` file is a classifier: one image input, one ``[1, C]`` output."""
    # deferred: LiteRT loads only where a model is run
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=fileio.read_bytes(path))
    outputs = interpreter.get_output_details()
    return len(outputs) == 1 and len(outputs[0]["shape"]) == 2


def evaluate_image_folder(
    tflite_path: str,
    image_root: str,
    output_dir: str,
    *,
    variant: str,
    labels: Sequence[str] | None = None,
    latency_runs: int = 20,
) -> tuple[EvaluationResult, list[tuple[str, str]]]:
    """Score a classifier file on ``image_root/<class name>/<image>`` and write the reports.

    Folder names are matched to the model's class names by name: the labels
    packed in the file's TFLite metadata, else ``labels`` (one per output, in
    order), else the sorted folder names (then the file must have that many
    classes). Images are read as ExampleGen reads them (EXIF orientation
    applied, every mode to RGB); files that cannot be read are skipped and
    returned (path, reason), never dropped silently.

    Returns:
      (the evaluation, the skipped files).

    Raises:
      DataError: a folder class the model does not know, or no readable image.
      UsageError: labels that do not fit the model.
    """
    content = fileio.read_bytes(tflite_path)
    label_map, images, ignored = folder.read_folders(image_root)
    folder_classes = [c.name for c in label_map.classes]
    model_labels = list(read_labels(content) or labels or folder_classes)
    unknown = sorted(set(folder_classes) - set(model_labels))
    if unknown:
        raise DataError(
            f"{image_root}: class folder(s) {', '.join(unknown)} are not among the model's "
            f"classes ({', '.join(model_labels[:10])}{', ...' if len(model_labels) > 10 else ''})"
        )
    index = {name: i for i, name in enumerate(model_labels)}
    skipped = [(path, "not an image file name") for path in ignored]

    def readable():
        """(decoded image, label) one at a time: the interpreter scores each image before
        the next is decoded, so no step holds the folder's decoded images."""
        for image in images:
            try:
                loaded = load_image(image.path)
            except ImageReadError as exc:
                skipped.append((image.path, exc.detail))
                continue
            for kind, detail in loaded.repairs:
                if kind == "recovered_truncated":  # scored, but the user should know
                    LOG.warning("%s: cut-off image scored as recovered (%s)", image.path, detail)
            yield decode_image(loaded.encoded)[None], np.asarray([index[image.class_label]])

    stream = readable()
    first = next(stream, None)
    if first is None:
        raise DataError(f"{image_root}: no readable image in the class folders")
    pairs, first = itertools.chain([first], stream), None  # no reference left behind
    scores = evaluate_tflite(content, pairs, num_classes=len(model_labels), k=TOP_K)
    for path, reason in skipped:
        LOG.warning("skipped %s: %s", path, reason)
    row = _variant_entry(variant, tflite_path, scores, model_labels)
    row["input_dtype"] = scores["input_dtype"]
    if latency_runs > 0:
        stats = tflite_latency(content, runs=latency_runs)
        row["latency"] = dataclasses.asdict(stats)
    row["delta_to_float"] = {}
    rule = EvaluateOptions(candidate=variant, metric="top1")
    decision = decide_blessing({variant: row["metrics"]}, rule)
    files = write_reports([row], "", decision, model_labels, output_dir)
    return EvaluationResult([row], "", decision, files), skipped
