"""What the Evaluators report about a TFLite set's quantization.

* the converter's ``layer_errors.json`` (per-layer int8 error of ``ptq_int8``,
  :mod:`model_maker.core.layer_errors`): copied unchanged beside the reports,
  its :data:`WORST_LAYERS` worst rows in report.md, report.html and metrics.json;
* the layers each ``ptq_mixed`` kept float (its manifest entry), added to its
  metrics.json entry and named in the reports;
* ``qat_decision.json`` (``qat.mode: auto``, :mod:`model_maker.core.qat_decision`):
  copied, in metrics.json, and the reports show the decision with the
  trade-off table of the candidates it tried.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model_maker.core.data import fileio
from model_maker.core.layer_errors import LAYER_ERRORS_FILE, RANK_METRIC
from model_maker.core.qat_decision import (
    QAT_DECISION_FILE,
    QATDecision,
    read_qat_decision,
    write_qat_decision,
)
from model_maker.core.report_tables import html_table, markdown_table, md_cell
from model_maker.core.tflite_manifest import read_manifest

LOG = logging.getLogger("qatflow")

#: Rows of the worst-layer table of the reports and of metrics.json's ``layer_errors``.
WORST_LAYERS = 10
#: Tensor names longer than this are shortened in the reports (report.html: full in a title).
TENSOR_CHARS = 60
#: Manifest keys of a variant that keeps some layers float (``ptq_mixed``), copied to
#: its metrics.json entry.
FLOAT_LAYER_KEYS = ("float_layers", "float_layer_rule")


def _number(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec``; "n/a" when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    try:
        return format(value, spec)
    except ValueError:  # "d" of a float
        return str(value)


def _short(text: str, limit: int = TENSOR_CHARS) -> str:
    """``text`` cut in the middle to ``limit`` characters (fused TFLite names end in the op)."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "\u2026" + text[len(text) - (limit - head - 1) :]


def _layer_name(row: Mapping[str, Any]) -> str:
    """The Keras layer of a ``layer_errors.json`` row, with the layers fused into it."""
    layer = str(row.get("layer") or "")
    names = row.get("keras_layers")
    fused = [str(n) for n in names if str(n) != layer] if isinstance(names, list) else []
    if not layer:
        return "n/a"
    return f"{layer} (+ {', '.join(fused)})" if fused else layer


@dataclass(frozen=True)
class QuantizationReport:
    """What a TFLite set says about its quantization: the per-layer int8 error, the
    layers its mixed variants keep float, and what ``qat.mode: auto`` decided.

    Attributes:
      data: ``layer_errors.json`` exactly as the converter wrote it (b"" when the set
        has none); the evaluation keeps a copy, so every layer stays with the metrics.
      document: its content ({} when none).
      mixed: variant -> its manifest's ``float_layers`` and ``float_layer_rule``.
      qat_decision: the set's ``qat_decision.json`` (None when QAT mode was always).
    """

    data: bytes = b""
    document: Mapping[str, Any] = field(default_factory=dict)
    mixed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    qat_decision: QATDecision | None = None

    @property
    def layers(self) -> list[Mapping[str, Any]]:
        """Every row of ``layers``, worst first."""
        rows = self.document.get("layers")
        return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []

    @property
    def worst(self) -> list[Mapping[str, Any]]:
        """The :data:`WORST_LAYERS` worst rows."""
        return self.layers[:WORST_LAYERS]

    def title(self) -> str:
        variant = str(self.document.get("variant") or "ptq_int8")
        samples = self.document.get("samples")
        return (
            f"Worst int8 layers ({variant}, RMSE in quantization steps, "
            f"{_number(samples, 'd')} calibration images)"
        )

    def summary(self) -> dict[str, Any]:
        """metrics.json's ``layer_errors``: where the full table is and its worst rows."""
        return {
            "file": LAYER_ERRORS_FILE,
            "variant": self.document.get("variant"),
            "samples": self.document.get("samples"),
            "rank_metric": self.document.get("rank_metric", RANK_METRIC),
            "num_layers": len(self.layers),
            "worst": [dict(r) for r in self.worst],
        }

    def add_summary(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document`` (metrics.json) with ``layer_errors`` (its summary) and
        ``qat_decision`` when the set has them."""
        if self.document:
            document["layer_errors"] = self.summary()
        if self.qat_decision is not None:
            document["qat_decision"] = self.qat_decision.to_dict()
        return document

    def copy_files(self, output_dir: str) -> dict[str, str]:
        """Copy ``layer_errors.json`` (unchanged) and ``qat_decision.json`` into
        ``output_dir``; ``{name: path}`` of what was copied."""
        out = {}
        if self.data:
            path = fileio.join(output_dir, LAYER_ERRORS_FILE)
            fileio.write_bytes(path, self.data)
            out[LAYER_ERRORS_FILE] = path
        if self.qat_decision is not None:
            out[QAT_DECISION_FILE] = write_qat_decision(output_dir, self.qat_decision)
        return out

    def _table(self) -> tuple[list[str], list[list[str]], list[str]]:
        """(header, formatted rows, full tensor names) of the worst-layer table."""
        header = ["rank", "Keras layer", "op", RANK_METRIC, "mean error", "max abs error", "tensor"]
        rows, tensors = [], []
        for row in self.worst:
            tensor = str(row.get("tensor") or "")
            tensors.append(tensor)
            rows.append(
                [
                    _number(row.get("rank"), "d"),
                    _layer_name(row),
                    str(row.get("op") or ""),
                    _number(row.get(RANK_METRIC), ".2f"),
                    _number(row.get("mean_error"), ".3g"),
                    _number(row.get("max_abs_error"), ".3g"),
                    _short(tensor),
                ]
            )
        return header, rows, tensors

    def _note(self) -> str:
        return (
            "TFLite QuantizationDebugger on calibration images: each quantized op's output "
            "against the same op run in float on the same input, in units of the tensor's "
            "quantization step (0.29 = rounding only); errors in the tensor's own units. "
            f"All {len(self.layers)} quantized ops: {LAYER_ERRORS_FILE}."
        )

    def _mixed_lines(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(sentence, [(layer, full tensor)]) of each variant that keeps layers float."""
        out = []
        for variant, entry in self.mixed.items():
            layers = [f for f in entry.get("float_layers") or [] if isinstance(f, Mapping)]
            rule = str(entry.get("float_layer_rule") or "")
            sentence = f"{variant} keeps {len(layers)} layer(s) in float" + (
                f" ({rule})" if rule else ""
            )
            tensors = [str(f.get("tensor") or "") for f in layers]
            names = [
                (str(f.get("layer") or _short(tensor)), tensor)
                for f, tensor in zip(layers, tensors, strict=True)
            ]
            out.append((sentence, names))
        return out

    def markdown(self) -> str:
        """The report.md sections."""
        parts = _decision_markdown(self.qat_decision) if self.qat_decision else []
        if self.document:
            header, rows, _ = self._table()
            parts += [
                f"## {self.title()}",
                "",
                self._note(),
                "",
                markdown_table(header, [[md_cell(c) for c in row] for row in rows]),
                "",
            ]
        for sentence, names in self._mixed_lines():
            listed = ", ".join(name for name, _ in names) or "none"
            parts += [md_cell(f"{sentence}: {listed}."), ""]
        return "\n".join(parts)

    def html(self) -> str:
        """The report.html sections (every name escaped; full tensor names in titles)."""
        parts = [_decision_html(self.qat_decision)] if self.qat_decision else []
        if self.document:
            header, rows, tensors = self._table()
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(c)}</td>" for c in row[:-1])
                + f'<td title="{html.escape(tensor)}">{html.escape(row[-1])}</td></tr>'
                for row, tensor in zip(rows, tensors, strict=True)
            )
            parts += [
                f"<h2>{html.escape(self.title())}</h2>",
                f"<p>{html.escape(self._note())}</p>",
                f'<table class="layer-errors"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>",
            ]
        for sentence, names in self._mixed_lines():
            listed = ", ".join(
                f'<span title="{html.escape(tensor)}">{html.escape(name)}</span>'
                for name, tensor in names
            )
            parts.append(f"<p>{html.escape(sentence)}: {listed or 'none'}.</p>")
        return "\n".join(parts)


def read_quantization_report(tflite_dir: str) -> QuantizationReport | None:
    """The per-layer errors, float layers and QAT decision of a TFLite set; None when it
    has none of them (a set converted before they existed, or without int8 PTQ).

    A ``layer_errors.json`` that is not a JSON object is left out with a warning:
    the evaluation does not depend on it.
    """
    mixed = {
        str(e["variant"]): {k: e[k] for k in FLOAT_LAYER_KEYS if k in e}
        for e in read_manifest(tflite_dir)
        if "float_layers" in e
    }
    path = fileio.join(tflite_dir, LAYER_ERRORS_FILE)
    data, document = b"", {}
    if fileio.isfile(path):
        data = fileio.read_bytes(path)
        try:
            document = json.loads(data)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            LOG.warning("%s is not a JSON object; no layer errors in the report", path)
            data, document = b"", {}
    decision = read_qat_decision(tflite_dir)
    if not data and not mixed and decision is None:
        return None
    return QuantizationReport(data, document, mixed, decision)


def _candidate_rows(decision: QATDecision) -> tuple[list[str], list[list[str]]]:
    """The trade-off table of the candidates ``qat.mode: auto`` tried."""
    header = ["candidate", "float layers", decision.metric or "metric", "meets rule", "MB", "ms"]
    rows = []
    for row in decision.candidates:
        size = row.get("bytes")
        rows.append(
            [
                str(row.get("variant") or ""),
                _number(row.get("float_layers"), "d") if row.get("float_layers") else "",
                _number(_points(row.get("metric")), ".2f"),
                "yes" if row.get("blessed") else "no",
                _number(size / 1e6 if isinstance(size, int | float) else None, ".2f"),
                _number(row.get("latency_ms"), ".2f"),
            ]
        )
    return header, rows


def _points(value: Any) -> float | None:
    return value * 100.0 if isinstance(value, int | float) and not isinstance(value, bool) else None


def _decision_lines(decision: QATDecision) -> list[str]:
    qat = f"QAT ran ({decision.qat_seconds:.0f} s)" if decision.qat else "QAT skipped"
    return [
        f"{qat}; candidate {decision.candidate}; checks took {decision.check_seconds:.0f} s.",
        decision.reason,
    ]


def _decision_markdown(decision: QATDecision) -> list[str]:
    parts = [f"## QAT decision (qat.mode {decision.mode})", ""]
    parts += [md_cell(line) + "  " for line in _decision_lines(decision)] + [""]
    if decision.candidates:
        header, rows = _candidate_rows(decision)
        parts += [markdown_table(header, [[md_cell(c) for c in r] for r in rows]), ""]
    return parts


def _decision_html(decision: QATDecision) -> str:
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in _decision_lines(decision))
    table = html_table(*_candidate_rows(decision)) if decision.candidates else ""
    return f"<h2>QAT decision (qat.mode {html.escape(decision.mode)})</h2>{lines}{table}"
