"""The worst int8 layers of a run, from the Evaluator's copy of the converter's layer_errors.json.

The file (``model_maker.core.layer_errors``): ``{"variant": "ptq_int8", "samples": N,
"rank_metric": "rmse_over_scale", "layers": [{"rank", "tensor", "op", "layer",
"keras_layers", "rmse_over_scale", "rmse", "mean_error", "max_abs_error", ...}]}``, every
quantized op, worst first. The layers a mixed variant (``ptq_mixed``) kept float come from
its metrics.json entry (``float_layers``, ``float_layer_rule``). Rows that are not objects
are left out and values that are not numbers show as n/a; names are shown as text only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboard import files

LAYER_ERRORS_FILE = "layer_errors.json"
#: Rows of the table shown open; the rest are behind a details element.
WORST = 10


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class LayerRow:
    """One quantized op of the table.

    Attributes:
      rank: 1 = worst.
      layer: its Keras layer ("" when the tensor names none).
      fused: the other Keras layers fused into the op.
      op: the TFLite op.
      rmse_over_scale: RMSE in quantization steps.
      mean_error: mean (quantized - float), in the tensor's units.
      max_abs_error: largest difference, in the tensor's units.
      tensor: the TFLite tensor name.
    """

    rank: int
    layer: str
    fused: tuple[str, ...]
    op: str
    rmse_over_scale: float | None
    mean_error: float | None
    max_abs_error: float | None
    tensor: str


@dataclass(frozen=True)
class LayerErrors:
    """layer_errors.json of an evaluation, checked.

    Attributes:
      rows: every op, worst first.
      variant: the measured variant (ptq_int8).
      samples: calibration images measured on (None when not given).
      error: why there is no table ("" when the file was read).
    """

    rows: list[LayerRow] = field(default_factory=list)
    variant: str = ""
    samples: int | None = None
    error: str = ""

    @property
    def worst(self) -> list[LayerRow]:
        return self.rows[:WORST]


def _row(index: int, raw: Mapping[str, Any]) -> LayerRow:
    layer = str(raw.get("layer") or "")
    names = raw.get("keras_layers")
    fused = tuple(str(n) for n in names if str(n) != layer) if isinstance(names, list) else ()
    rank = raw.get("rank")
    return LayerRow(
        rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else index + 1,
        layer=layer,
        fused=fused,
        op=str(raw.get("op") or ""),
        rmse_over_scale=_number(raw.get("rmse_over_scale")),
        mean_error=_number(raw.get("mean_error")),
        max_abs_error=_number(raw.get("max_abs_error")),
        tensor=str(raw.get("tensor") or ""),
    )


def read_layer_errors(path: str) -> LayerErrors:
    """layer_errors.json at ``path``; ``error`` set when it cannot be shown."""
    document, error = files.read_json(path)
    if error:
        if not os.path.exists(path):
            error = (
                "no layer errors in this run (no int8 PTQ variant, "
                f"or converted before the TFLiteConverter wrote {LAYER_ERRORS_FILE})"
            )
        return LayerErrors(error=error)
    if not isinstance(document, Mapping) or not isinstance(document.get("layers"), list):
        return LayerErrors(error=f"{LAYER_ERRORS_FILE} has no list of layers")
    raw = [r for r in document["layers"] if isinstance(r, Mapping)]
    samples = document.get("samples")
    return LayerErrors(
        rows=[_row(i, r) for i, r in enumerate(raw)],
        variant=str(document.get("variant") or "ptq_int8"),
        samples=samples if isinstance(samples, int) and not isinstance(samples, bool) else None,
    )


@dataclass(frozen=True)
class FloatLayers:
    """The layers a mixed variant keeps float.

    Attributes:
      variant: the variant (ptq_mixed).
      rule: how they were chosen, in words.
      layers: (Keras layer or "", TFLite tensor, op) of each.
    """

    variant: str
    rule: str
    layers: list[tuple[str, str, str]]


def float_layers(metrics: Mapping[str, Any]) -> list[FloatLayers]:
    """The variants of a metrics.json that keep layers float, in its order."""
    out = []
    for entry in metrics.get("variants") or []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("float_layers"), list):
            continue
        layers = [
            (str(f.get("layer") or ""), str(f.get("tensor") or ""), str(f.get("op") or ""))
            for f in entry["float_layers"]
            if isinstance(f, Mapping)
        ]
        rule = str(entry.get("float_layer_rule") or "")
        out.append(FloatLayers(str(entry.get("variant") or "?"), rule, layers))
    return out
