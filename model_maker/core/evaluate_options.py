"""The Evaluator's settings: the blessing rule and how variants are measured (no numpy).

The pipeline config's ``evaluate`` section is :class:`EvaluateOptions`; it
loads without the evaluation machinery (pycocotools, numpy), so ``qatflow
--help`` and ``qatflow config`` stay fast. :mod:`model_maker.core.evaluation`
re-exports both classes and applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

from model_maker.core.errors import SettingsError
from model_maker.core.settings import Settings, check_name, check_range


@dataclass(frozen=True)
class BlessingRule(Settings):
    """When the candidate variant is good enough to push.

    Attributes:
      candidate: variant that is blessed and pushed.
      metric: metric compared (AP, AP50, AP75, top1...).
      max_drop: largest allowed drop from the baseline in points (0..100):
        blessed when ``candidate >= baseline - max_drop / 100``.
      baseline: float reference; "" uses keras_float when evaluated, else float32.
    """

    candidate: str = "qat_int8"
    metric: str = "AP"
    max_drop: float = 1.0
    baseline: str = ""

    def validate(self) -> None:
        check_name("candidate", self.candidate)
        if not self.metric:
            raise SettingsError("metric", "name the metric the blessing compares")
        check_range("max_drop", self.max_drop, 0.0, 100.0)
        if self.baseline:
            check_name("baseline", self.baseline)


@dataclass(frozen=True)
class EvaluateOptions(BlessingRule):
    """The Evaluator's settings (the config's ``evaluate`` section): the blessing rule,
    plus how latency is measured and which split is scored.

    Attributes:
      latency_runs: timed interpreter invocations per variant (0 skips latency).
      split: the Examples split every variant is evaluated on.
    """

    latency_runs: int = 20
    split: str = "eval"

    def validate(self) -> None:
        super().validate()
        check_range("latency_runs", self.latency_runs, 0)
        check_name("split", self.split)
