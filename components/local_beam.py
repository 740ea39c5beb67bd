"""A Beam executor base that skips TFX's dependency packaging for in-process runners.

``BaseBeamExecutor`` builds an sdist of the installed project (about 13 s,
left in /tmp) whenever Beam args are given, so that remote workers can
install it. The DirectRunner runs in this process (or in processes forked
from it) and imports the project directly, so the package is never used.
"""

from __future__ import annotations

import copy

from tfx.dsl.components.base import base_beam_executor


def runs_locally(beam_pipeline_args: list[str]) -> bool:
    """True when the args choose no runner or the DirectRunner."""
    # deferred: Apache Beam is heavy; only this path needs it
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from model_maker.core.data.ingest import DIRECT_RUNNERS

    return PipelineOptions(list(beam_pipeline_args)).view_as(StandardOptions).runner in (
        DIRECT_RUNNERS
    )


class LocalBeamExecutor(base_beam_executor.BaseBeamExecutor):
    """``BaseBeamExecutor`` that keeps the Beam args but packages nothing for local runners."""

    def __init__(self, context: base_beam_executor.BaseBeamExecutor.Context | None = None):
        args = list(getattr(context, "beam_pipeline_args", None) or [])
        if args and runs_locally(args):
            context = copy.copy(context)
            context.beam_pipeline_args = []
            super().__init__(context)
            self._beam_pipeline_args = args
        else:
            super().__init__(context)
