"""The task switch: one entry point per pipeline stage for detectors and classifiers alike.

The components call these functions (one call each) and stay task-blind:

* the Trainer's options JSON names the task (``model.task``):
  :func:`trainer_options` builds the task's options class and
  :func:`train_from_examples` runs that task's trainer;
* a Model artifact says what it holds (:func:`model_task`: a classifier's
  ``keras/config.json`` has ``"task": "image_classification"``, a detector's
  has no ``task``), which picks the QAT trainer and the converter;
* a TFLite set's ``manifest.json`` says its task, which picks the evaluator.

``qat.mode: auto`` (:class:`AccuracyCheck`) lives here too, because it chains
the stages of either task: :func:`qat_or_skip` converts and scores ``ptq_int8``
first and runs QAT only when PTQ misses the blessing rule; its decision
(``qat_decision.json``) travels with the QAT Model to the converter, which then
leaves ``qat_int8`` out, and to the Evaluator, which then blesses ``ptq_int8``.

This module sits above the task packages (it imports both); nothing in
``model_maker.core`` or a task package imports it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model_maker.core.convert_options import ConvertOptions
from model_maker.core.data import fileio
from model_maker.core.errors import SettingsError
from model_maker.core.evaluate_options import EvaluateOptions
from model_maker.core.model_folder import CONFIG_FILE, resolve_model_dir
from model_maker.core.options import IMAGE_CLASSIFICATION, OBJECT_DETECTION
from model_maker.core.qat_decision import (  # noqa: F401 - QAT_DECISION_FILE: API
    QAT_DECISION_FILE,
    QATDecision,
    read_qat_decision,
    write_qat_decision,
)
from model_maker.core.qat_hparams import QATHParams
from model_maker.core.settings import Settings, check_choice, check_range, from_json, replace
from model_maker.core.tflite_manifest import manifest_task
from model_maker.image_classifier.options import ClassifierTrainerOptions
from model_maker.object_detector.options import TFLiteSetOptions, TrainerOptions

LOG = logging.getLogger("qatflow")

PTQ_CHECK_SUBDIR = "ptq_check"


def trainer_options(text: str) -> TrainerOptions | ClassifierTrainerOptions:
    """The Trainer's options from their JSON, as the class of the task they name."""
    task = (json.loads(text or "{}").get("model") or {}).get("task", OBJECT_DETECTION)
    cls = ClassifierTrainerOptions if task == IMAGE_CLASSIFICATION else TrainerOptions
    return from_json(cls, text)


def model_task(model_dir: str) -> str:
    """The task of a Trainer/QATTrainer Model artifact (or a folder holding ``config.json``)."""
    path = fileio.join(resolve_model_dir(model_dir), CONFIG_FILE)
    return str(json.loads(fileio.read_text(path)).get("task") or OBJECT_DETECTION)


def train_from_examples(
    examples_uri: str,
    output_dir: str,
    run_dir: str,
    options: TrainerOptions | ClassifierTrainerOptions,
    checkpoint_dir: str | None = None,
) -> dict[str, float]:
    """Train the model ``options`` describe; returns the eval metrics (AP... or top1...)."""
    if isinstance(options, ClassifierTrainerOptions):
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.trainer import train_from_examples as train
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.trainer import train_from_examples as train
    return train(examples_uri, output_dir, run_dir, options, checkpoint_dir=checkpoint_dir)


def qat_from_examples(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    hparams: QATHParams,
    *,
    train_split: str = "train",
    eval_split: str = "eval",
    checkpoint_root: str | None = None,
    run_dir: str | None = None,
    strategy: Any = None,
) -> Any:
    """QAT of the float Model in ``float_model_dir`` (detector or classifier); its
    TensorBoard epoch scalars go to ``run_dir`` when given. ``strategy`` is the
    one ``hparams.strategy`` names when the caller built it already (None: the
    task's trainer builds it)."""
    if model_task(float_model_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.qat_trainer import qat_from_examples as qat
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.qat_trainer import qat_from_examples as qat
    return qat(
        examples_uri,
        float_model_dir,
        output_dir,
        hparams,
        train_split=train_split,
        eval_split=eval_split,
        checkpoint_root=checkpoint_root,
        run_dir=run_dir,
        strategy=strategy,
    )


@dataclass(frozen=True)
class AccuracyCheck(Settings):
    """``qat.mode: auto``: run QAT only when post-training quantization misses the rule,
    and fall back to ``ptq_mixed`` when QAT misses it too.

    Attributes:
      rule: the Evaluator's blessing rule (metric, max_drop, baseline, split); the
        check scores ``ptq_int8`` against it on the same split.
      converter: how ``ptq_int8`` is converted (the TFLiteConverter's settings).
      mixed_float_layers: when QAT also misses (its fake-quant metric on the
        split), ``ptq_mixed`` files with these many float layers are tried in
        order until one meets the rule; empty tries none.
    """

    rule: EvaluateOptions = EvaluateOptions()
    converter: TFLiteSetOptions = TFLiteSetOptions()
    mixed_float_layers: tuple[int, ...] = (5, 10, 20)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixed_float_layers", tuple(self.mixed_float_layers))
        super().__post_init__()

    def validate(self) -> None:
        check_choice("rule.candidate", self.rule.candidate, ("ptq_int8", "qat_int8"))
        check_float_layer_ladder("mixed_float_layers", self.mixed_float_layers)


def check_float_layer_ladder(key: str, counts: Sequence[int]) -> None:
    """Float-layer counts to try: positive integers, each larger than the one before."""
    for i, count in enumerate(counts):
        check_range(f"{key}[{i}]", count, 1)
        if i and count <= counts[i - 1]:
            raise SettingsError(key, f"must grow: {list(counts)}")


def _try_candidate(
    examples_uri: str,
    float_model_dir: str,
    work: str,
    check: AccuracyCheck,
    variant: str,
    float_layers: int | None = None,
) -> tuple[dict[str, Any], Any]:
    """Convert one PTQ candidate of the float model into ``work`` and score it by the rule:
    its trade-off row (metric, blessed, bytes, latency_ms, seconds) and the verdict."""
    start = time.monotonic()
    convert = check.converter.convert
    if float_layers is None:  # ptq_int8: no layer errors, they are the converter's job
        convert = replace(convert, variants=(variant,), layer_error_samples=0)
    else:
        convert = replace(_with_mixed(convert, float_layers), variants=(variant,))
    tflite = fileio.join(work, "tflite")
    convert_trained_model(
        float_model_dir,
        tflite,
        replace(check.converter, convert=convert),
        examples_uri=examples_uri,
    )
    evaluation = evaluate_artifacts(
        examples_uri,
        tflite,
        fileio.join(work, "evaluation"),
        replace(check.rule, candidate=variant, latency_runs=min(check.rule.latency_runs, 10)),
        model_dir=float_model_dir,
    )
    verdict = evaluation.decision
    entry = {e["variant"]: e for e in evaluation.variants}[variant]
    latency = entry.get("latency") or {}
    row = {
        "variant": variant,
        "float_layers": float_layers,
        "metric": verdict.candidate_value,
        "blessed": verdict.blessed,
        "bytes": entry.get("bytes"),
        "latency_ms": latency.get("median_ms"),
        "seconds": round(time.monotonic() - start, 1),
    }
    return row, verdict


def _first_mixed_within_rule(
    examples_uri: str, float_model_dir: str, work: str, check: AccuracyCheck, rows: list
) -> tuple[int, Any] | None:
    """Try ``ptq_mixed`` with each of ``check.mixed_float_layers`` float layers in turn
    (their rows appended to ``rows``); the first count within the rule and its verdict."""
    for count in check.mixed_float_layers:
        LOG.info("qat.mode auto: trying ptq_mixed with %d float layers", count)
        folder = fileio.join(work, f"ptq_mixed_{count}")
        row, verdict = _try_candidate(
            examples_uri, float_model_dir, folder, check, "ptq_mixed", count
        )
        rows.append(row)
        if verdict.blessed:
            return count, verdict
    return None


def qat_or_skip(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    hparams: QATHParams,
    check: AccuracyCheck | None = None,
    **qat_kwargs: Any,
) -> tuple[QATDecision, Any]:
    """QAT (:func:`qat_from_examples`), or with ``check`` (``qat.mode: auto``) first
    ``ptq_int8`` converted and scored against the rule: QAT runs only when PTQ misses,
    and when QAT's fake-quant metric misses too, ``ptq_mixed`` files with more and
    more float layers are tried until one meets the rule.

    With ``check``, each candidate's TFLite file and evaluation stay in
    ``output_dir/ptq_check/<candidate>`` and the decision goes to
    ``output_dir/qat_decision.json``. Returns the decision and the QAT result (None
    when QAT was skipped).

    ``hparams.strategy`` is built first (a multi-worker one must exist before
    TensorFlow runs anything). With ``multi_worker`` every worker makes the same
    check and decision; only the chief's files land in ``output_dir``.
    """
    # deferred: TensorFlow loads only when a stage runs
    from model_maker.core import strategy as strategy_lib

    strategy = strategy_lib.make_strategy(hparams.strategy if hparams else None)
    qat_kwargs["strategy"] = strategy
    if check is None:
        result = qat_from_examples(examples_uri, float_model_dir, output_dir, hparams, **qat_kwargs)
        why = "qat.mode is always"
        return QATDecision("always", True, "qat_int8", why, qat_seconds=result.seconds), result
    with strategy_lib.worker_dirs(strategy, output_dir) as (own_dir,):
        return _qat_if_ptq_misses(
            examples_uri,
            float_model_dir,
            output_dir,
            own_dir or output_dir,
            hparams,
            check,
            qat_kwargs,
        )


def _qat_if_ptq_misses(
    examples_uri: str,
    float_model_dir: str,
    output_dir: str,
    own_dir: str,
    hparams: QATHParams,
    check: AccuracyCheck,
    qat_kwargs: dict[str, Any],
) -> tuple[QATDecision, Any]:
    """:func:`qat_or_skip` with a check; this process writes the check's files and the
    decision into ``own_dir`` (``output_dir`` but on a non-chief worker)."""
    work = fileio.join(own_dir, PTQ_CHECK_SUBDIR)
    LOG.info("qat.mode auto: converting and scoring ptq_int8 before deciding on QAT")
    row, ptq = _try_candidate(
        examples_uri, float_model_dir, fileio.join(work, "ptq_int8"), check, "ptq_int8"
    )
    rows = [row]
    result, qat_seconds, candidate, float_layers = None, 0.0, "ptq_int8", None
    reason = "; ".join(ptq.reasons)
    if ptq.blessed:
        reason = f"QAT skipped: {reason}"
    else:
        LOG.info("qat.mode auto: QAT runs: %s", reason)
        result = qat_from_examples(examples_uri, float_model_dir, output_dir, hparams, **qat_kwargs)
        qat_seconds = round(result.seconds, 1)
        candidate, reason = "qat_int8", f"QAT ran: {reason}"
        fake_quant = result.metrics.get(ptq.metric)
        rows.append(
            {
                "variant": "qat (fake-quant)",
                "float_layers": None,
                "metric": fake_quant,
                "blessed": _meets(fake_quant, ptq.threshold),
                "bytes": None,
                "latency_ms": None,
            }
        )
        if not rows[-1]["blessed"]:
            reason += "; QAT's fake-quant model missed it too"
            found = _first_mixed_within_rule(examples_uri, float_model_dir, work, check, rows)
            if found is None:
                tried = list(check.mixed_float_layers)
                reason += f", and so did ptq_mixed with {tried} float layers"
            else:
                float_layers, mixed = found
                candidate = "ptq_mixed"
                reason += f"; ptq_mixed with {float_layers} float layers meets it: "
                reason += "; ".join(mixed.reasons)
    decision = QATDecision(
        "auto",
        result is not None,
        candidate,
        reason,
        metric=ptq.metric,
        baseline_metric=ptq.baseline_value,
        ptq_metric=ptq.candidate_value,
        mixed_float_layers=float_layers,
        candidates=tuple(rows),
        check_seconds=round(sum(r.get("seconds") or 0.0 for r in rows), 1),
        qat_seconds=qat_seconds,
    )
    LOG.info("qat.mode auto: %s", reason)
    write_qat_decision(own_dir, decision)
    return decision, result


def _meets(value: float | None, threshold: float | None) -> bool:
    """Whether a metric value passes the rule's threshold (unknown ones pass: nothing to act on)."""
    # 1e-9 absorbs float rounding at the boundary, as decide_blessing does.
    return value is None or threshold is None or value >= threshold - 1e-9


def _as_decided(options: TFLiteSetOptions, decision: QATDecision | None) -> TFLiteSetOptions:
    """``options`` as ``qat.mode: auto`` decided: no ``qat_int8`` when QAT was skipped,
    and the chosen ``ptq_mixed`` when that is the candidate."""
    if decision is None:
        return options
    convert = options.convert
    if not decision.qat and "qat_int8" in convert.variants:
        LOG.info("no qat_int8: %s", decision.reason)
        convert = replace(convert, variants=tuple(v for v in convert.variants if v != "qat_int8"))
    if decision.candidate == "ptq_mixed" and decision.mixed_float_layers:
        convert = _with_mixed(convert, decision.mixed_float_layers)
    return replace(options, convert=convert)


def _with_mixed(convert: ConvertOptions, float_layers: int) -> ConvertOptions:
    """``convert`` writing ``ptq_mixed`` with the ``float_layers`` worst layers float."""
    variants = convert.variants
    return replace(
        convert,
        variants=variants if "ptq_mixed" in variants else (*variants, "ptq_mixed"),
        mixed_float_layers=float_layers,
        mixed_float_patterns=(),
        layer_error_samples=convert.layer_error_samples or ConvertOptions().layer_error_samples,
    )


def convert_trained_model(
    model_dir: str,
    output_dir: str,
    options: TFLiteSetOptions,
    *,
    qat_model_dir: str | None = None,
    examples_uri: str | None = None,
) -> dict[str, Any]:
    """The TFLite set of the Model in ``model_dir`` (detector or classifier); the manifest.

    A QAT Model whose ``qat_decision.json`` says QAT was skipped gives no ``qat_int8``,
    one that chose ``ptq_mixed`` gives that file with the chosen float layers; the
    decision is copied into the set for the Evaluator.
    """
    decision = read_qat_decision(qat_model_dir)
    options = _as_decided(options, decision)
    if decision is not None and not decision.qat:
        qat_model_dir = None
    if model_task(model_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.tflite_set import convert_trained_model as convert

        manifest = convert(
            model_dir,
            output_dir,
            options.convert,
            qat_model_dir=qat_model_dir,
            examples_uri=examples_uri,
        )
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.tflite_set import convert_trained_model as detector

        manifest = detector(
            model_dir, output_dir, options, qat_model_dir=qat_model_dir, examples_uri=examples_uri
        )
    if decision is not None:
        write_qat_decision(output_dir, decision)
    return manifest


def evaluate_artifacts(
    examples_uri: str,
    tflite_dir: str,
    output_dir: str,
    options: EvaluateOptions,
    *,
    model_dir: str | None = None,
    beam_args: Sequence[str] = (),
) -> Any:
    """Evaluate the TFLite set (and Keras model) with the evaluation of its manifest's task.

    When the set's ``qat_decision.json`` (``qat.mode: auto``) names another
    candidate than ``qat_int8`` (``ptq_int8`` when QAT was skipped, ``ptq_mixed``
    when only it met the rule), a ``qat_int8`` candidate becomes that one (the
    Evaluator scores it again on its own run; the decision is in its reports).
    """
    decision = read_qat_decision(tflite_dir)
    if decision is not None and options.candidate == "qat_int8" != decision.candidate:
        LOG.info("blessing candidate %s: %s", decision.candidate, decision.reason)
        options = replace(options, candidate=decision.candidate)
    if manifest_task(tflite_dir) == IMAGE_CLASSIFICATION:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.image_classifier.evaluator import evaluate_artifacts as evaluate
    else:
        # deferred: each task's TensorFlow stack loads only when it runs
        from model_maker.object_detector.evaluator import evaluate_artifacts as evaluate
    return evaluate(
        examples_uri, tflite_dir, output_dir, options, model_dir=model_dir, beam_args=beam_args
    )
