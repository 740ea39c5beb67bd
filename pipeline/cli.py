"""The ``qatflow`` command line: one grammar for every subcommand.

Every subcommand takes ``-v``/``--quiet``; those that read the pipeline config
take ``--config FILE`` and repeated ``--set key.sub=value``. Usage and config
errors exit with code 2 and one line on stderr; failures caused by input data
exit with code 1 and one line; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from model_maker.core.errors import QatflowError, UsageError
from model_maker.core.hparams import HParamsError
from pipeline.config import ConfigError, PipelineConfig, dump_yaml, load_config, write_resolved

PROG = "qatflow"
LOG = logging.getLogger("qatflow")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors are one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def version() -> str:
    try:
        return importlib.metadata.version("qatflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _add_verbosity(parser: argparse.ArgumentParser, top: bool) -> None:
    default = 0 if top else argparse.SUPPRESS
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="more logging (-vv for debug); tracebacks on errors",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="only warnings and errors; no progress bars",
    )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand ``--config`` and ``--set``."""
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
    return load_config(args.config, args.overrides)


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    LOG.setLevel(level)
    # TensorFlow and Beam are chatty at INFO; keep them to warnings unless -vv.
    for name in ("tensorflow", "absl", "apache_beam"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


# --- subcommands --------------------------------------------------------------


def _cmd_config(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.output:
        path = write_resolved(config, args.output)
        LOG.info("resolved config written to %s", path)
    else:
        sys.stdout.write(dump_yaml(config))
    return 0


def _register_config(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "config",
        help="print the resolved pipeline config (defaults <- YAML <- --set), validated",
        description="Load, override and validate the pipeline config, then print it as YAML "
        "or write it to DIR/config.yaml.",
    )
    add_config_args(parser)
    parser.add_argument("--output", metavar="DIR", help="write DIR/config.yaml instead of printing")
    parser.set_defaults(func=_cmd_config)


Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    # Subcommand modules are imported here, not at module level, so `qatflow --help`
    # stays fast and a broken optional module cannot break the whole CLI at import.
    from pipeline.commands import dashboard, data, evaluate_tflite, run

    return [
        _register_config,
        data.register,
        evaluate_tflite.register,
        run.register,
        dashboard.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train EfficientDet-Lite detectors with quantization-aware training and "
        "ship int8 TFLite models, as a TFX pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    _add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in _registrars():
        register(sub)
    for child in sub.choices.values():
        _add_verbosity(child, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-") and set(a[1:]) == {"v"})
    verbose += argv.count("--verbose")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        configure_logging(args.verbose, args.quiet)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except (ConfigError, HParamsError) as exc:
        return _fail(exc, 2, verbose)
    except QatflowError as exc:
        return _fail(exc, exc.exit_code, verbose)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence prints one line
        if verbose:
            traceback.print_exc()
        else:
            print(
                f"{PROG}: error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
                file=sys.stderr,
            )
        return 1


def _fail(exc: Exception, code: int, verbose: int) -> int:
    if verbose:
        traceback.print_exc()
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
