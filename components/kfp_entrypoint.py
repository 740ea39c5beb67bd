"""The command of every qatflow task on Kubeflow: TFX's Kubeflow V2 entrypoint, with a
qatflow error as one line instead of a traceback.

``qatflow compile`` writes ``python -m components.kfp_entrypoint`` as each task's
command (:func:`pipeline.kubeflow.compile_pipeline`); the arguments stay TFX's
(``--executor_class_path``, ``--json_serialized_invocation_args``) and TFX's own
entrypoint (``tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor``)
runs the executor. An error the user must fix, a
:class:`~model_maker.core.errors.QatflowError`, ends the task with ``qatflow: error:
<message>`` and the error's exit code, as ``qatflow`` does on a laptop: 2 for a usage
error such as ``strategy 'gpus': no GPU found ...`` on a node without one, 1 for a
data error such as a missing annotations file. Any other exception keeps its
traceback (absl's ``app.run`` prints it; exit code 1).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from model_maker.core.errors import QatflowError

#: The entrypoint module TFX's compiler names in each task's command.
TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def main(argv: Sequence[str] | None = None) -> int:
    """Run TFX's entrypoint on ``argv`` (``sys.argv`` when None); a qatflow error's exit
    code (2 usage, 1 data) when one stops it."""
    # deferred: TFX loads only when a task runs
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_main

    try:
        # the flags parser is TFX's own, so the task's arguments mean what they meant
        app.run(
            tfx_main.main, argv=list(argv) if argv else None, flags_parser=tfx_main._parse_flags
        )
    except QatflowError as exc:
        print(f"qatflow: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
