"""The command-line arguments shared by subcommands: ``--config`` and ``--set``.

Imported by ``pipeline.cli`` and by the subcommand modules; it imports neither,
so the CLI sits on top of its commands without a cycle.
"""

from __future__ import annotations

import argparse

from pipeline.config import PipelineConfig, load_config


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand ``--config FILE`` and repeated ``--set KEY=VALUE``."""
    parser.add_argument("--config", metavar="FILE", help="pipeline config YAML (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=3 (repeatable)",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The validated pipeline config: defaults <- ``--config`` YAML <- ``--set`` overrides.

    Raises:
      UsageError: (a ``ConfigError``) naming the file, line or key at fault.
    """
    return load_config(args.config, args.overrides)
