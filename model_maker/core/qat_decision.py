"""What ``qat.mode`` decided (``qat_decision.json``): whether QAT ran, which variant
the Evaluator should bless, and every candidate the decision tried.

Written by the QATTrainer (:func:`model_maker.tasks.qat_or_skip`) into its
Model artifact, copied by the converter into the TFLite set and by the
Evaluator beside its reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model_maker.core.data import fileio

QAT_DECISION_FILE = "qat_decision.json"


@dataclass(frozen=True)
class QATDecision:
    """What ``qat.mode`` decided, as written to ``qat_decision.json``.

    Attributes:
      mode: ``always`` or ``auto``.
      qat: whether QAT ran.
      candidate: the variant the Evaluator should bless (ptq_int8, qat_int8 or ptq_mixed).
      reason: why, in words.
      metric: the metric compared.
      baseline_metric: the baseline's value in the check (None when not checked).
      ptq_metric: ``ptq_int8``'s value in the check.
      mixed_float_layers: float layers of the chosen ``ptq_mixed`` (None: not chosen).
      candidates: every candidate tried, in order: variant, float_layers, the
        metric, blessed, bytes and latency_ms (TFLite files; None for the
        fake-quant QAT model) and, for files, seconds (conversion + evaluation).
      check_seconds: wall time of the TFLite candidates (conversions + evaluations).
      qat_seconds: wall time of QAT (0 when skipped).
    """

    mode: str
    qat: bool
    candidate: str
    reason: str
    metric: str = ""
    baseline_metric: float | None = None
    ptq_metric: float | None = None
    mixed_float_layers: int | None = None
    candidates: tuple[dict[str, Any], ...] = ()
    check_seconds: float = 0.0
    qat_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["candidates"] = list(self.candidates)
        return out


def read_qat_decision(folder: str | None) -> QATDecision | None:
    """The ``qat_decision.json`` of a QAT Model, TFLite set or evaluation folder, if any."""
    if not folder:
        return None
    path = fileio.join(folder, QAT_DECISION_FILE)
    if not fileio.exists(path):
        return None
    values = json.loads(fileio.read_text(path))
    values["candidates"] = tuple(values.get("candidates") or ())
    return QATDecision(**values)


def write_qat_decision(folder: str, decision: QATDecision) -> str:
    """Write ``folder/qat_decision.json``; return its path."""
    fileio.makedirs(folder)
    path = fileio.join(folder, QAT_DECISION_FILE)
    fileio.write_text(path, json.dumps(decision.to_dict(), indent=2))
    return path
