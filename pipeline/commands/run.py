"""``qatflow run``: the whole pipeline locally; ``compile`` and ``submit`` for Kubeflow."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile

from pipeline.commands.common import add_config_args, config_from_args
from pipeline.commands.console import hides_native_chatter
from pipeline.config import write_resolved
from pipeline.kubeflow import compile_pipeline, submit
from pipeline.runners import LATEST_RUN_FILE, preflight, run_local

LOG = logging.getLogger("qatflow")


@hides_native_chatter
def _cmd_run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.runner:
        overrides.append(f"runner.kind={args.runner}")
    args.overrides = overrides
    config = config_from_args(args)
    preflight(config)  # before the resolved config lands in pipeline_root: nothing written
    path = write_resolved(config, config.runner.pipeline_root)
    LOG.info("resolved config written to %s", path)
    summary = run_local(config)
    print()
    print(summary.report_markdown.strip() or "(the Evaluator wrote no report)")
    print()
    print(f"run:       {summary.run_id}")
    print(f"blessed:   {'yes' if summary.blessed else 'no'}")
    if summary.pushed:
        print(f"pushed to: {summary.pushed}")
    else:
        print(f"pushed:    nothing ({summary.push_reason or 'no Pusher output'})")
    print(f"summary:   {os.path.join(config.runner.pipeline_root, LATEST_RUN_FILE)}")
    return 0


@hides_native_chatter
def _cmd_compile(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    compile_pipeline(config, args.output)
    print(args.output)
    return 0


@hides_native_chatter
def _cmd_submit(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(config, os.path.join(tmp, "pipeline.json"))
        url = submit(config, package, args.host, args.namespace, args.experiment)
    print(url)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``compile`` and ``submit`` to the ``qatflow`` command line."""
    run = sub.add_parser(
        "run",
        help="run the whole pipeline locally (ExampleGen -> ... -> Pusher)",
        description="Run the pipeline with TFX's BeamDagRunner (default) or LocalDagRunner, "
        "an ML Metadata SQLite store under runner.pipeline_root, and caching on. Ends with the "
        "float/PTQ/QAT table, the blessing and where the model was pushed; writes "
        "<pipeline_root>/latest_run.json.",
    )
    add_config_args(run)
    run.add_argument(
        "--runner",
        choices=["beam", "local"],
        help="orchestrator (default: runner.kind of the config, beam)",
    )
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser(
        "compile",
        help="compile the pipeline for Kubeflow Pipelines (KFP v2 IR JSON)",
        description="Compile with TFX's KubeflowV2DagRunner. Images, accelerators and "
        "resource requests come from the config's kubeflow section.",
    )
    add_config_args(comp)
    comp.add_argument("--output", required=True, metavar="FILE", help="pipeline JSON to write")
    comp.set_defaults(func=_cmd_compile)

    sub_ = sub.add_parser(
        "submit",
        help="compile and submit to a Kubeflow Pipelines endpoint, print the run URL",
        description="Compile as `qatflow compile` does and submit with kfp.Client.",
    )
    add_config_args(sub_)
    sub_.add_argument("--host", required=True, metavar="URL", help="KFP API endpoint")
    sub_.add_argument("--namespace", metavar="NS", help="Kubernetes namespace (multi-user KFP)")
    sub_.add_argument("--experiment", metavar="NAME", help="experiment (default: pipeline name)")
    sub_.set_defaults(func=_cmd_submit)
