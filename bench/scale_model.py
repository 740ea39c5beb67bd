"""The pure arithmetic of bench_scale.py: linear cost fits and worker extrapolation.

No TensorFlow, no Beam: ``tests/bench/test_scale_model.py`` checks it directly.

A stage's wall time on one worker is modelled as ``start-up + per_item x items``
(:func:`fit_linear` finds both by least squares over measured sizes). On ``W``
workers (:func:`stage_seconds`):

* a parallel stage (Beam ingest and evaluation, data-parallel training) takes
  ``start-up + per_item x items / (W x efficiency)``: every worker pays the
  start-up at the same time, the items are shared;
* a serial stage (TFLite conversion) takes ``start-up + per_item x items``
  whatever ``W`` is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

#: COCO 2017 detection: train2017 and val2017 image counts.
COCO_TRAIN_IMAGES = 118_287
COCO_VAL_IMAGES = 5_000


@dataclass(frozen=True)
class LinearFit:
    """``seconds = startup_s + per_item_s x items``, fitted by least squares.

    Attributes:
      startup_s: intercept (seconds at zero items).
      per_item_s: slope (seconds per item).
      points: the ``(items, seconds)`` pairs fitted.
      rms_residual_s: root mean square of the residuals (0 with two points).
      max_rel_residual: largest ``|residual| / seconds`` over the points.
    """

    startup_s: float
    per_item_s: float
    points: tuple[tuple[float, float], ...]
    rms_residual_s: float
    max_rel_residual: float

    def predict(self, items: float) -> float:
        return self.startup_s + self.per_item_s * items

    def as_dict(self) -> dict:
        return asdict(self)


def fit_linear(items: Sequence[float], seconds: Sequence[float]) -> LinearFit:
    """Least-squares ``seconds = a + b x items`` over at least two distinct sizes.

    Raises:
      ValueError: fewer than two points, lengths differ, or all sizes equal.
    """
    if len(items) != len(seconds):
        raise ValueError(f"{len(items)} sizes but {len(seconds)} times")
    if len(items) < 2:
        raise ValueError("a linear fit needs at least two points")
    n = len(items)
    mean_x = sum(items) / n
    mean_y = sum(seconds) / n
    sxx = sum((x - mean_x) ** 2 for x in items)
    if sxx == 0:
        raise ValueError("a linear fit needs at least two distinct sizes")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(items, seconds, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    residuals = [y - (intercept + slope * x) for x, y in zip(items, seconds, strict=True)]
    rms = math.sqrt(sum(r * r for r in residuals) / n)
    rel = max((abs(r) / y if y else 0.0) for r, y in zip(residuals, seconds, strict=True))
    return LinearFit(
        startup_s=intercept,
        per_item_s=slope,
        points=tuple((float(x), float(y)) for x, y in zip(items, seconds, strict=True)),
        rms_residual_s=rms,
        max_rel_residual=rel,
    )


@dataclass(frozen=True)
class StageCost:
    """One stage of the pipeline at a target scale.

    Attributes:
      name: stage name (table row).
      startup_s: fixed seconds per run (per worker, paid in parallel).
      per_item_s: seconds per item on one worker.
      items: items the stage processes (images x epochs x variants, ...).
      parallel: whether workers share the items (False: conversion).
      efficiency: scaling efficiency of ``W`` workers (1.0 = linear), parallel stages only.
    """

    name: str
    startup_s: float
    per_item_s: float
    items: float
    parallel: bool = True
    efficiency: float = 1.0


def stage_seconds(stage: StageCost, workers: int) -> float:
    """Wall seconds of ``stage`` on ``workers`` workers (module doc)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not stage.parallel:
        return stage.startup_s + stage.per_item_s * stage.items
    if not 0 < stage.efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {stage.efficiency}")
    return stage.startup_s + stage.per_item_s * stage.items / (workers * stage.efficiency)


def extrapolate(stages: Sequence[StageCost], workers: Sequence[int]) -> dict[int, dict]:
    """Per worker count: hours per stage, total (stages run one after another), bottleneck."""
    out: dict[int, dict] = {}
    for count in workers:
        hours = {s.name: stage_seconds(s, count) / 3600.0 for s in stages}
        out[count] = {
            "hours": hours,
            "total_hours": sum(hours.values()),
            "bottleneck": bottleneck(hours),
        }
    return out


def bottleneck(hours: Mapping[str, float]) -> str:
    """The stage with the most hours (first one on a tie)."""
    return max(hours, key=lambda name: hours[name])


def crossover_workers(stage: StageCost, serial_seconds: float) -> float | None:
    """Workers at which parallel ``stage`` falls to ``serial_seconds`` (None: never, or at 1).

    Solves ``startup + per_item x items / (W x efficiency) = serial_seconds`` for ``W``.
    """
    room = serial_seconds - stage.startup_s
    work = stage.per_item_s * stage.items / stage.efficiency
    if room <= 0 or work <= 0:
        return None
    return max(work / room, 1.0)


def power_law(sizes: Mapping[float, float]) -> tuple[float, float]:
    """``(coefficient, exponent)`` of ``cost = coefficient x size ** exponent`` through measured
    ``size -> cost`` points: least squares in log-log over two or more points; with one
    point the exponent is 1 (cost proportional to size, e.g. to FLOPs).

    Raises:
      ValueError: no points, or a size or cost that is not positive.
    """
    if not sizes:
        raise ValueError("power_law needs at least one point")
    if any(x <= 0 or y <= 0 for x, y in sizes.items()):
        raise ValueError(f"power_law needs positive sizes and costs, got {dict(sizes)}")
    if len(sizes) == 1:
        ((x, y),) = sizes.items()
        return y / x, 1.0
    fit = fit_linear([math.log(x) for x in sizes], [math.log(y) for y in sizes.values()])
    return math.exp(fit.startup_s), fit.per_item_s


def power_law_predict(sizes: Mapping[float, float], size: float) -> float:
    """The :func:`power_law` through ``sizes`` evaluated at ``size``."""
    coefficient, exponent = power_law(sizes)
    return coefficient * size**exponent


def format_hours(hours: float) -> str:
    """Hours with a precision that suits the magnitude (``0.004`` h shows as ``15 s``)."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    if hours < 100:
        return f"{hours:.1f} h"
    return f"{hours:,.0f} h"


def markdown_table(model: str, result: Mapping[int, Mapping], workers: Sequence[int]) -> list[str]:
    """Rows of a Markdown table: stage x workers in hours, then total and bottleneck."""
    names = list(result[workers[0]]["hours"])
    header = f"| {model} stage | " + " | ".join(f"{w} worker{'s' * (w > 1)}" for w in workers)
    lines = [header + " |", "|---|" + "---:|" * len(workers)]
    for name in names:
        cells = [format_hours(result[w]["hours"][name]) for w in workers]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **total** | "
        + " | ".join(format_hours(result[w]["total_hours"]) for w in workers)
        + " |"
    )
    lines.append("| bottleneck | " + " | ".join(result[w]["bottleneck"] for w in workers) + " |")
    return lines
