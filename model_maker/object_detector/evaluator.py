"""Evaluate a converted detector set (and its Keras float model) on an Examples split.

:func:`evaluate_artifacts` is the one call the TFX Evaluator component makes;
a notebook can call it with the same folders. Every TFLite variant of the
Converter's ``manifest.json`` is scored, plus the Keras float model when its
folder is given (post-processed with the same NMS settings as the TFLite op,
so the float/PTQ/QAT rows compare like with like); see
:mod:`model_maker.core.evaluation` for the metrics, the reports and the
blessing. The set's ``layer_errors.json`` (when the converter measured the
per-layer int8 error) is copied beside the reports, which list its worst layers.
"""

from __future__ import annotations

from collections.abc import Sequence

from model_maker.core.errors import DataError
from model_maker.core.evaluation import (
    KERAS_FLOAT,
    BeamOptions,
    EvalSource,
    EvaluateOptions,
    EvaluationResult,
    Variant,
    check_label_names,
    evaluate_variants,
    manifest_nms,
    model_label_names,
    read_manifest,
    variants_from_manifest,
)
from model_maker.core.quantization_report import read_quantization_report
from model_maker.object_detector.dataloader import annotations_path, read_label_map, split_files
from model_maker.object_detector.keras_detector import KerasDetectorFactory


def evaluate_artifacts(
    examples_uri: str,
    tflite_dir: str,
    output_dir: str,
    options: EvaluateOptions = EvaluateOptions(),
    *,
    model_dir: str | None = None,
    beam_args: Sequence[str] = (),
) -> EvaluationResult:
    """Score every variant of ``tflite_dir`` (and the Keras model of ``model_dir``).

    Args:
      examples_uri: the Examples artifact (records, ``label_map.json``, ground truth).
      tflite_dir: the TFLite set (``manifest.json``, the files it names and, when
        measured, ``layer_errors.json``).
      output_dir: where ``metrics.json``, the reports and ``blessing.json`` go.
      options: blessing rule, latency runs and the split scored.
      model_dir: the Trainer's Model artifact; its float model becomes the
        ``keras_float`` row and the preferred baseline.
      beam_args: the pipeline's Beam arguments (runner, workers).
    """
    variants = variants_from_manifest(tflite_dir)
    label_names = read_label_map(examples_uri)
    for variant in variants:
        # Files with TFLite metadata carry their labels: they must be the data's.
        mismatches = check_label_names(variant.name, model_label_names(variant.path), label_names)
        if mismatches:
            raise DataError(
                "the TFLite set's labels are not the Examples' classes: " + "; ".join(mismatches)
            )
    if model_dir:
        # The float baseline, post-processed with the TFLite op's settings.
        nms = manifest_nms(read_manifest(tflite_dir)[0])
        variants.insert(0, Variant(KERAS_FLOAT, KerasDetectorFactory(model_dir, nms), model_dir))
    return evaluate_variants(
        variants,
        EvalSource(record_files=tuple(split_files(examples_uri, options.split))),
        annotations_path(examples_uri, options.split),
        output_dir,
        label_names=label_names,
        rule=options,
        latency_runs=options.latency_runs,
        beam=BeamOptions.from_args(beam_args),
        work_dir=output_dir,
        quantization=read_quantization_report(tflite_dir),
    )
