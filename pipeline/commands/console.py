"""The console of a ``qatflow`` command: progress, results and real warnings; chatter at ``-v``.

TensorFlow, LiteRT, TFX and Apache Beam write start-up chatter to stderr that says
nothing about the user's run (issue 20). At the default verbosity (and with ``-q``) a
command hides a fixed list of it, each kind where it can be told apart most precisely;
``-v`` changes nothing and shows all of it as the libraries wrote it. Nothing else is
hidden: qatflow's own warnings, a user's data issues, a failed component, C++ warnings
and errors not on the list, tracebacks.

- Environment, set by the command (:func:`hides_native_chatter`), never at import:
  ``TF_CPP_MIN_LOG_LEVEL=2`` unless the environment chooses (TensorFlow's C++ INFO and
  WARNING lines once it has read the variable, e.g. ``cpu_feature_guard.cc``). Beam's
  worker processes start from this environment, so they inherit it.
- Python logging (:class:`LibraryChatter`, on the console handler that
  ``pipeline.cli.configure_logging`` installs): TFX's "property_predicate is not
  supported" (absl), the two warnings every Beam worker process forwards at start-up,
  Beam's INFO on the root logger (qatflow logs under ``qatflow``), and Beam's
  traceback of a component stopped by a qatflow error (usage or data), which the
  command's last line states (``qatflow: error: strategy 'gpus': no GPU found ...``).
- File descriptor 2 (:func:`hides_native_chatter`): C++ lines that no setting controls.
  TensorFlow's shared libraries log with absl while they load, before anything has read
  TF_CPP_MIN_LOG_LEVEL or could call ``absl::InitializeLog``; LiteRT logs its XNNPACK
  delegate at INFO whatever the level; the TFLite quantizer prints its settings with
  ``llvm::dbgs()``; XLA logs the failed ``cuInit`` of a machine without a GPU as an
  ERROR. For the command's duration fd 2 is a pipe read by a small filter process
  (:func:`filter_main`), which writes every line to the console except those
  :func:`is_native_chatter` names. Beam's worker processes inherit fd 2, so their lines
  pass the same filter. Python's own writes go through it too, in order, and pass.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import re
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator

from model_maker.core.errors import QatflowError

#: TensorFlow's C++ log level while a command runs at the default verbosity (2: errors only).
TF_CPP_MIN_LOG_LEVEL = "2"

# absl/glog record prefix after the severity letter: <mmdd> <hh:mm:ss.us> <thread> <file:line>]
# (seconds count from the epoch while absl is uninitialised: "I0000 00:00:1796228528.13")
_ABSL_RECORD = r"\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./+-]+:\d+\] "
_NATIVE_CHATTER = (
    # absl C++, once per library copy of absl: it writes to stderr until initialised
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written"),
    # a C++ record at INFO severity (absl/glog format)
    re.compile("I" + _ABSL_RECORD),
    # the second line of TensorFlow's cpu_feature_guard.cc INFO record
    re.compile(r"To enable the following instructions: .*rebuild TensorFlow with"),
    # TFLite/LiteRT minimal logging at INFO ("INFO: Created TensorFlow Lite XNNPACK ...")
    re.compile(r"INFO: "),
    # the TFLite converter's quantizer: its settings, to llvm::dbgs() (no flag turns it off)
    re.compile(r"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "),
)
# XLA's CUDA platform: cuInit fails (ERROR severity) where no NVIDIA driver is installed
_CUINIT_FAILED = re.compile("E" + _ABSL_RECORD + "failed call to cuInit: ")
_NVIDIA_DRIVER = "/proc/driver/nvidia/version"
# The filter process imports this module from the folder that holds the pipeline
# package (argv[1]), whatever the command's working directory and sys.path.
_FILTER_PROCESS = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pipeline.commands.console import filter_main; sys.exit(filter_main(sys.argv[2:]))"
)

_TFX_UNSUPPORTED = (
    # TFX's input resolution tests a protobuf message for truth (always true), so it warns
    # for every input channel of every component although no predicate is set.
    "ArtifactQuery.property_predicate is not supported.",
    "ContextQuery.property_predicate is not supported.",
)
_BEAM_WORKER_STARTUP = re.compile(r'message: "No semi_persistent_directory found: ')
_BEAM_DISCARDED_ARGS = re.compile(r'message: "Discarding unparseable args: \[([^\]]*)\]')
# Flags Beam's DirectRunner passes to its own workers, which their option parser lacks.
_BEAM_RUNNER_FLAGS = frozenset({"--direct_runner_use_stacked_bundle", "--pipeline_type_check"})


def is_native_chatter(line: str, gpu_driver: bool = False) -> bool:
    """True for a stderr line of the C++ libraries that the default console leaves out.

    ``gpu_driver``: an NVIDIA driver is installed, so a failed ``cuInit`` is news.
    """
    line = line.rstrip("\r\n")
    if any(pattern.match(line) for pattern in _NATIVE_CHATTER):
        return True
    return not gpu_driver and bool(_CUINIT_FAILED.match(line))


def _qatflow_error(record: logging.LogRecord) -> bool:
    """Whether ``record`` carries a qatflow error (a setting, a machine or the data the
    user must change), which the command prints as its last line anyway."""
    return bool(record.exc_info) and isinstance(record.exc_info[1], QatflowError)


def is_library_chatter(record: logging.LogRecord) -> bool:
    """True for a Python log record of TFX or Beam that the default console leaves out."""
    if record.name.startswith("apache_beam") and _qatflow_error(record):
        # Beam logs a failed component's exception with its whole traceback; for a
        # qatflow error (e.g. "strategy 'gpus': no GPU found ...", "annotations.json:
        # annotation file not found") the command's one line says it
        return True
    if record.name == "absl":
        return record.getMessage() in _TFX_UNSUPPORTED
    if record.name == "root":  # libraries calling logging.info(); qatflow never logs here
        return record.levelno < logging.WARNING
    if record.name.startswith("apache_beam.runners.portability"):
        message = record.getMessage()  # a worker's log entry, forwarded as one line
        if _BEAM_WORKER_STARTUP.search(message):
            return True
        discarded = _BEAM_DISCARDED_ARGS.search(message)
        return bool(discarded) and set(re.findall(r"--\w+", discarded[1])) <= _BEAM_RUNNER_FLAGS
    return False


class LibraryChatter(logging.Filter):
    """Leaves out the records :func:`is_library_chatter` names (a handler filter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_library_chatter(record)


Command = Callable[[argparse.Namespace], int]


def hides_native_chatter(command: Command) -> Command:
    """Run ``command`` (a subcommand function that loads TensorFlow, LiteRT or Beam) with
    the native libraries' chatter left out at the default verbosity (module doc)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        with native_console(getattr(args, "verbose", 0)):
            return command(args)

    return run


@contextlib.contextmanager
def native_console(verbose: int) -> Iterator[None]:
    """Set TF_CPP_MIN_LOG_LEVEL and filter fd 2 for the body, unless ``verbose``.

    fd 2 is filtered only when Python's ``sys.stderr`` writes to it: a caller that
    redirected ``sys.stderr`` (a test calling ``main()``) reads what Python writes and
    is left alone. If the filter cannot start, the body runs unfiltered.
    """
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_MIN_LOG_LEVEL)
    started = _start_filter() if _python_stderr_is_fd2() else None
    try:
        yield
    finally:
        if started:
            _stop_filter(*started)


def _python_stderr_is_fd2() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation: not a file
        return False


def _start_filter() -> tuple[subprocess.Popen, int] | None:
    """Point fd 2 at a pipe read by the filter process; return it and the console's fd."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    argv = [sys.executable, "-c", _FILTER_PROCESS, package_root]
    if os.path.exists(_NVIDIA_DRIVER):
        argv.append("--gpu-driver")
    sys.stderr.flush()
    console = os.dup(2)
    try:
        read_end, write_end = os.pipe()  # not inheritable: only fd 2 reaches child processes
    except OSError:
        os.close(console)
        return None
    try:
        process = subprocess.Popen(argv, stdin=read_end, stdout=console, stderr=console)
    except OSError:
        os.close(write_end)
        os.close(console)
        return None
    finally:
        os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    return process, console


def _stop_filter(process: subprocess.Popen, console: int) -> None:
    """Give fd 2 back to the console; the filter writes what it holds and ends."""
    sys.stderr.flush()
    os.dup2(console, 2)
    os.close(console)
    with contextlib.suppress(subprocess.TimeoutExpired):
        # It ends when the last writer closes the pipe: at once, unless a child process
        # of the command is still running; then it goes on until that one ends.
        process.wait(timeout=10)


def pump(source: int, sink: int, drop: Callable[[str], bool], idle: float = 0.05) -> None:
    """Copy ``source`` to ``sink`` line by line until end of file, leaving out the lines
    ``drop`` names. A partial line goes out as it is once ``source`` has been quiet for
    ``idle`` seconds if it holds a ``\\r`` (a progress bar being redrawn), for 20 x
    ``idle`` otherwise (a C++ line written in pieces is judged whole). A closed ``sink``
    is not an error: the rest is read and dropped, so that writers never block."""
    pending = b""
    live = True
    while True:
        quiet = idle if b"\r" in pending else 20 * idle
        if pending and not select.select([source], [], [], quiet)[0]:
            live = _write(sink, pending, live)
            pending = b""
            continue
        chunk = os.read(source, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not drop(_text(line)))
        if kept:
            live = _write(sink, kept, live)
    if pending and not drop(_text(pending)):
        _write(sink, pending, live)


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")


def _write(sink: int, data: bytes, live: bool) -> bool:
    """Write all of ``data`` to ``sink`` while it is ``live``; return whether it still is."""
    while live and data:
        try:
            data = data[os.write(sink, data) :]
        except InterruptedError:
            continue
        except BlockingIOError:  # a console left in non-blocking mode: wait until it takes more
            select.select([], [sink], [])
            continue
        except OSError:  # the console went away (a closed terminal or pipe)
            return False
    return live


def filter_main(argv: list[str]) -> int:
    """The filter process: stdin is the command's fd 2, stdout the console."""
    # Ctrl-C interrupts the command, which prints why; this process ends with its output.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gpu_driver = "--gpu-driver" in argv
    try:
        pump(0, 1, functools.partial(is_native_chatter, gpu_driver=gpu_driver))
    except Exception:  # noqa: BLE001 - a writer to a pipe nobody reads would block or die
        traceback.print_exc()
        live = True
        while chunk := os.read(0, 1 << 16):
            live = _write(1, chunk, live)
    return 0
