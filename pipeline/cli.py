"""The ``qatflow`` command line: one grammar for every subcommand.

Every subcommand takes ``-v``/``--quiet``; those that read the pipeline config
take ``--config FILE`` and repeated ``--set key.sub=value``. A failure is one
line on stderr (``-v`` adds the traceback) and an exit code taken from the
error's type alone, through :attr:`QatflowError.exit_code`: 2 for usage, config
and settings errors (:class:`UsageError` and its subclasses), 1 for data and
runtime errors; any other exception exits with 1 and names its type.

The console holds qatflow's progress, results and real warnings; the start-up
chatter of TensorFlow, LiteRT, TFX and Beam shows with ``-v`` only
(``pipeline.commands.console``).

This module sits on top: it imports the subcommand modules
(``pipeline.commands``), which never import it. They are light at import time
(each defers TensorFlow, Beam and the rest to the function that runs the
command), so ``qatflow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from model_maker.core.errors import QatflowError, UsageError
from pipeline.commands import console, dashboard, data, evaluate_tflite, run
from pipeline.commands.common import add_config_args, config_from_args
from pipeline.config import dump_yaml, write_resolved

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


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: qatflow's progress at INFO (``-q``: warnings only, ``-vv``: debug).

    Libraries log warnings and errors (everything at ``-vv``); without ``-v`` their
    known chatter is left out too (:class:`console.LibraryChatter`; the C++ side is
    left to the heavy commands, :func:`console.hides_native_chatter`).
    """
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
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(console.LibraryChatter())


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


REGISTRARS: tuple[Registrar, ...] = (
    _register_config,
    data.register,
    evaluate_tflite.register,
    run.register,
    dashboard.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train EfficientDet-Lite detectors and image classifiers with "
        "quantization-aware training and ship int8 TFLite models, as a TFX pipeline.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    _add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in REGISTRARS:
        register(sub)
    for child in sub.choices.values():
        _add_verbosity(child, top=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``qatflow`` command; return the process exit code (never raises)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = _verbose_in(argv)  # known before parsing, so parse errors honour -v too
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        configure_logging(args.verbose, args.quiet)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except QatflowError as exc:
        return _fail(str(exc), exc.exit_code, verbose)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence prints one line
        hint = "" if verbose else " (run with -v for the traceback)"
        return _fail(f"{type(exc).__name__}: {exc}{hint}", 1, verbose)


def _verbose_in(argv: Sequence[str]) -> int:
    """How many ``-v``/``--verbose`` the arguments hold (``-vv`` counts two)."""
    short = sum(a.count("v") for a in argv if a.startswith("-") and set(a[1:]) == {"v"})
    return short + argv.count("--verbose")


def _fail(message: str, code: int, verbose: int) -> int:
    """Print the traceback (with ``-v``), then the error as one line; return ``code``."""
    if verbose:
        traceback.print_exc()
    one_line = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"{PROG}: error: {one_line or '(no message)'}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
