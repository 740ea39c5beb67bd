import logging
import subprocess
import sys

import pytest
import yaml
from PIL import Image

from model_maker.core.errors import DataError, QatflowError, SettingsError, UsageError
from model_maker.core.hparams import HParamsError
from pipeline import cli
from pipeline.cli import main
from pipeline.config import ConfigError


def test_version_and_help(capsys):
    for argv in (["--version"], ["--help"], ["config", "--help"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "qatflow 0.1.0" in out
    assert "--set KEY=VALUE" in out and "--config FILE" in out


def test_config_prints_resolved_yaml(capsys):
    assert main(["config", "--set", "train.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3


def test_config_writes_next_to_outputs(tmp_path):
    assert main(["-q", "config", "--set", "qat.epochs=2", "--output", str(tmp_path)]) == 0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["qat"]["epochs"] == 2


def test_bad_key_exits_2_with_one_line_suggestion(capsys):
    assert main(["config", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "did you mean 'epochs'" in err[0]


def test_bad_yaml_exits_2_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n   bad_indent: 1\n")
    assert main(["config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad}:3:" in err and "Traceback" not in err


def test_usage_error_exits_2_and_verbose_shows_traceback(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["config", "-v", "--set", "train.epochs=x"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_console_script_runs_in_a_fresh_process():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("qatflow ")


# --- errors to exit codes: through QatflowError.exit_code only ------------------


@pytest.fixture
def raising(monkeypatch):
    """A ``qatflow boom`` subcommand that raises the exception the test gives it."""

    def install(exc: BaseException) -> None:
        def boom(args):
            raise exc

        def register(sub):
            sub.add_parser("boom", help="raise an error (tests)").set_defaults(func=boom)

        monkeypatch.setattr(cli, "REGISTRARS", (*cli.REGISTRARS, register))

    return install


class _CustomExit(QatflowError):
    exit_code = 3


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (SettingsError("qat.learning_rate", "must be > 0, got 0"), 2, "qat.learning_rate: must"),
        (ConfigError("train.epoch: unknown key"), 2, "train.epoch: unknown key"),
        (HParamsError("model.hparams: bogus_key is not a hyperparameter"), 2, "bogus_key"),
        (UsageError("--port 70000: must be between 1 and 65535"), 2, "--port 70000"),
        (DataError("annotations.json:2: invalid JSON"), 1, "annotations.json:2: invalid JSON"),
        (QatflowError("the Trainer wrote no model"), 1, "the Trainer wrote no model"),
        (_CustomExit("an exit code of its own"), 3, "an exit code of its own"),
        (RuntimeError("disk on fire"), 1, "RuntimeError: disk on fire (run with -v"),
        (ValueError("line one\nline two"), 1, "ValueError: line one; line two"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_error_types_map_to_exit_codes_with_one_line(raising, capsys, exc, code, line):
    raising(exc)
    assert main(["boom"]) == code
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert err[0].startswith("qatflow: error: ") and line in err[0]
    assert captured.out == ""


@pytest.mark.parametrize(
    "exc",
    [SettingsError("qat.epochs", "must be > 0"), DataError("bad"), KeyError("x")],
    ids=lambda exc: type(exc).__name__,
)
def test_verbose_adds_the_traceback_before_the_one_line(raising, capsys, exc):
    raising(exc)
    code = main(["boom", "-v"])
    assert code == getattr(exc, "exit_code", 1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1].startswith("qatflow: error: ")
    assert main(["-v", "boom"]) == code  # before the subcommand too
    assert "Traceback" in capsys.readouterr().err


def test_a_real_settings_error_exits_2_in_one_line(capsys):
    assert main(["config", "--set", "train.epochs=x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.epochs" in err[0] and "Traceback" not in err[0]


def test_help_imports_nothing_heavy():
    """`qatflow --help` stays fast: the CLI and its commands defer the heavy libraries."""
    heavy = ("tensorflow", "tfx", "apache_beam", "ml_metadata", "flask", "numpy", "kfp", "PIL")
    code = f"import sys, pipeline.cli\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "", f"imported by `import pipeline.cli`: {proc.stdout}"


@pytest.mark.parametrize(
    "overrides",
    [
        ["qat.learning_rate=0"],
        ["qat.decay_rate=0"],
        ["train.moving_average_decay=1.0"],
        ["train.learning_rate=.nan"],
        ["postprocess.iou_threshold=.inf"],
        ["data.format=folder", "data.split_files={train: t.json}"],
        ["data.split_ratios={my split: 1.0}"],
        ["model.hparams=bogus_key=1"],
    ],
    ids=lambda o: " ".join(o),
)
def test_issue_14_cases_are_refused_by_qatflow_config(overrides, capsys):
    """Each value that a stage used to reject only after ExampleGen and training ran."""
    args = ["config"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    key = overrides[-1].split("=", 1)[0]
    assert err[0].startswith(f"qatflow: error: {key}"), err[0]


# --- qatflow ingest: classification inputs (folder with split folders, csv) ---------------


def _class_images(root, counts):
    """``root/<class>/<i>.png`` (8x6 grey PNGs) for each class and count."""
    for level, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (8, 6), (30 + 60 * level,) * 3).save(root / name / f"{i}.png")


def test_ingest_help_names_the_classification_inputs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["ingest", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--format {coco,voc,tfrecord,folder,csv}" in out
    assert "--split-dir NAME=DIR" in out and "--split-dir train=train --split-dir eval=val" in out
    assert "CSV file of path,label[,split] rows (csv)" in out


def test_ingest_split_folders_from_the_command_line(tmp_path, capsys):
    _class_images(tmp_path / "data" / "train", {"ants": 3, "bees": 2})
    _class_images(tmp_path / "data" / "val", {"ants": 1, "bees": 1})
    argv = ["-q", "ingest", "--format", "folder", "--input", str(tmp_path / "data")]
    argv += ["--workers", "1", "--output", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train, val hold class folders with images" in err[0]
    assert "--split-dir train=train --split-dir eval=val" in err[0]

    assert main([*argv, "--split-dir", "train=train", "--split-dir", "eval=val"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:4]] == [
        ["train", "5", "0"],
        ["eval", "2", "0"],
        ["total", "7", "0"],
    ]
    assert lines[4] == "classes: 1=ants, 2=bees"

    # --set is validated before the flags apply, so the config names the format too
    config = [
        "--set",
        "data.format=folder",
        "--set",
        "data.split_image_dirs={train: train, test: val}",
    ]
    assert main([*argv, *config]) == 0
    assert ["test", "2", "0"] in [line.split() for line in capsys.readouterr().out.splitlines()]

    assert main([*argv, "--split-dir", "train"]) == 2
    assert "--split-dir 'train': expected NAME=DIR" in capsys.readouterr().err


def test_ingest_csv_from_the_command_line(tmp_path, capsys):
    _class_images(tmp_path / "img", {"ants": 2, "bees": 1})
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(
        "path,label,split\nimg/ants/0.png,ants,train\nimg/ants/1.png,ants,eval\n"
        "img/bees/0.png,bees,train\nimg/bees/9.png,bees,train\nimg/ants/0.png,bees,eval\n"
    )
    argv = ["-q", "ingest", "--format", "csv", "--input", str(csv_file), "--workers", "1"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[3].split() == ["total", "3", "0"]
    assert "classes: 1=ants, 2=bees" in out
    assert "repaired/skipped: invalid_row 1, missing_image 1" in out


# --- issue 17: a YAML alias bomb is refused at once ---------------------------------


@pytest.mark.timeout(60)  # refused in well under a second; unbounded expansion takes minutes
@pytest.mark.parametrize("command", ["config", "run"])
def test_yaml_alias_bomb_exits_2_in_one_line(command, tmp_path, capsys):
    lines = ["model:", "  hparams:", "    a0: &a0 [" + ", ".join(["x"] * 9) + "]"]
    lines += [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert main([command, "--config", str(bomb)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"qatflow: error: {bomb}:3:") and "aliases" in err[0], err[0]


# --- issue 20: the console holds progress, results and real warnings; chatter at -v -------

# Lines of today's `make run` console (tests/pipeline/test_e2e.py checks a real run).
NATIVE_CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796228528.133389   28186 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796228528.133745   28186 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0315 12:34:56.789012   4242 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, "
    "output_inference_type: FLOAT32\r",
]
CUINIT = (
    "E0000 00:00:1796228551.775439   28186 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
REAL_LINES = [
    "16:22:31 WARNING qatflow.ingest: split eval is empty (its shard holds no records)",
    "16:22:31 INFO qatflow: Trainer: efficientdet-lite0, 3 classes",
    "W0000 00:00:1796228551.775439   28186 op_kernel.cc:1840] OP_REQUIRES failed at x.cc:12",
    "E0000 00:00:1796228551.775439   28186 cuda_dnn.cc:522] Loaded runtime CuDNN library: 8.1",
    "Traceback (most recent call last):",
    "RuntimeError: Failed to convert: loc(fused): error: 'tfl.conv_2d' op is not supported",
    "WARNING: Attempting to use a delegate that only supports static-sized tensors",
    "ERROR: Didn't find op for builtin opcode 'CONV_2D' version '7'",
    "demo images:  40%|####      | 80/200 [00:00<00:01, 111.50img/s]",
]


def _line_id(line):
    return " ".join(line.split()[:4])[:40]


@pytest.mark.parametrize("line", NATIVE_CHATTER, ids=_line_id)
def test_native_chatter_is_named(line):
    from pipeline.commands.console import is_native_chatter

    assert is_native_chatter(line) and is_native_chatter(line, gpu_driver=True)


@pytest.mark.parametrize("line", REAL_LINES, ids=_line_id)
def test_real_lines_are_not_chatter(line):
    from pipeline.commands.console import is_native_chatter

    assert not is_native_chatter(line)


def test_failed_cuinit_is_chatter_only_without_a_gpu_driver():
    from pipeline.commands.console import is_native_chatter

    assert is_native_chatter(CUINIT, gpu_driver=False)
    assert not is_native_chatter(CUINIT, gpu_driver=True)  # a broken GPU setup is news


def _record(name, level, message, *args):
    import logging

    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def _worker_entry(message):
    # how Beam's runner logs an entry that a worker process forwards (local_job_service.py)
    entry = f'severity: WARN timestamp {{   seconds: 1 }} message: "{message}" thread: "Main" '
    return _record("apache_beam.runners.portability.local_job_service", 30, "Worker: %s", entry)


def test_library_chatter_filter_keeps_real_warnings():
    from pipeline.commands.console import LibraryChatter

    chatter = [
        _record("absl", 30, "ArtifactQuery.property_predicate is not supported."),
        _record("absl", 30, "ContextQuery.property_predicate is not supported."),
        _record("root", 20, "Missing pipeline option (runner). Executing pipeline using ..."),
        _worker_entry("No semi_persistent_directory found:  User registered objects ..."),
        _worker_entry(
            "Discarding unparseable args: [\\'--direct_runner_use_stacked_bundle\\', "
            "\\'--pipeline_type_check\\']"
        ),
    ]
    real = [
        _record("qatflow.ingest", 30, "split eval is empty (its shard holds no records)"),
        _record("absl", 30, "Failed to resolve inputs of Trainer"),
        _record("absl", 40, "Execution 7 failed."),
        _record("root", 30, "a warning a library sent to the root logger"),
        _record("tensorflow", 30, "5 out of the last 5 calls triggered tf.function retracing"),
        _worker_entry("qatflow: image 12.jpg: box outside the image, clipped"),
        _worker_entry("Discarding unparseable args: [\\'--direct_num_worker=2\\']"),  # a typo
        _record("apache_beam.runners.portability.fn_api_runner", 40, "worker crashed"),
    ]
    keep = LibraryChatter().filter
    assert [r.getMessage() for r in chatter if keep(r)] == []
    assert [r.getMessage() for r in real if not keep(r)] == []


def test_default_logging_filters_library_chatter_and_v_does_not(capsys):
    import logging

    from pipeline.commands.console import LibraryChatter

    def filters():
        return [f for h in logging.getLogger().handlers for f in h.filters]

    assert main(["-q", "config"]) == 0
    assert any(isinstance(f, LibraryChatter) for f in filters())
    assert main(["-v", "config"]) == 0
    assert not any(isinstance(f, LibraryChatter) for f in filters())
    capsys.readouterr()


def test_pump_drops_chatter_keeps_the_rest_in_order_and_flushes_partial_lines():
    import os
    import select
    import threading

    from pipeline.commands.console import is_native_chatter, pump

    source_r, source_w = os.pipe()
    sink_r, sink_w = os.pipe()
    pumping = threading.Thread(target=pump, args=(source_r, sink_w, is_native_chatter, 0.05))
    pumping.start()
    try:
        # a progress bar redrawn with \r and no newline yet reaches the console at once
        os.write(source_w, b"\rdemo images:  3%")
        assert select.select([sink_r], [], [], 10)[0], "a partial line was held back"
        assert os.read(sink_r, 100) == b"\rdemo images:  3%"
        lines = [*NATIVE_CHATTER, *REAL_LINES, CUINIT, "\xe9t\xe9 \udcff"]
        data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\nno newline at the end"
        for start in range(0, len(data), 7):  # in pieces that cut lines apart
            os.write(source_w, data[start : start + 7])
    finally:
        os.close(source_w)
        pumping.join(10)
    os.close(sink_w)
    out = b""
    while chunk := os.read(sink_r, 1 << 16):
        out += chunk
    os.close(source_r)
    os.close(sink_r)
    kept = [*REAL_LINES, "\xe9t\xe9 \udcff", "no newline at the end"]
    assert out.decode("utf-8", "surrogateescape").split("\n") == kept


@pytest.fixture(scope="module")
def grid_model(tmp_path_factory):
    from tests.model_maker.core.detector_fixtures import (
        GridDetectorSpec,
        build_grid_detector,
        write_image_dataset,
    )

    root = tmp_path_factory.mktemp("console")
    images, annotations, _ = write_image_dataset(root, 4, GridDetectorSpec(), seed=5)
    model = root / "grid.tflite"
    model.write_bytes(build_grid_detector(GridDetectorSpec()))
    return root, model, images, annotations


def test_default_console_leaves_out_library_chatter_and_v_shows_it(grid_model):
    """`qatflow evaluate-tflite` with two Beam worker processes: TensorFlow and LiteRT load
    in this process and in each worker, which forward Beam's start-up warnings."""
    import os

    root, model, images, annotations = grid_model
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's
    argv = [sys.executable, "-m", "pipeline.cli", "evaluate-tflite", "--model", str(model),
            "--images", str(images), "--annotations", str(annotations), "--workers", "2",
            "--latency-runs", "0"]  # fmt: skip
    quiet, verbose = (
        subprocess.Popen(
            [*argv[:3], *flags, *argv[3:], "--output", str(root / f"out{len(flags)}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for flags in ([], ["-v"])
    )
    (out, err), (_, verbose_err) = quiet.communicate(timeout=600), verbose.communicate(timeout=600)
    assert (quiet.returncode, verbose.returncode) == (0, 0), err + verbose_err
    assert "grid: 4 images" in out and "AP " in out
    chatter = [
        "absl::InitializeLog()",
        "port.cc:",
        "cudart_stub.cc:",
        "cpu_feature_guard.cc:",
        "Created TensorFlow Lite XNNPACK delegate",
        "semi_persistent_directory",
        "Discarding unparseable args",
    ]
    if not os.path.exists("/proc/driver/nvidia/version"):
        chatter.append("failed call to cuInit")
    assert [c for c in chatter if c in err] == [], err
    assert err.splitlines() == [line for line in err.splitlines() if "INFO qatflow:" in line]
    assert "INFO qatflow: evaluating grid" in err
    # -v: TensorFlow's, LiteRT's and the workers' lines as the libraries wrote them
    shown = ["absl::InitializeLog()", "port.cc:", "XNNPACK delegate", "semi_persistent_directory"]
    assert [c for c in shown if c not in verbose_err] == [], verbose_err


def _failed_with(exc: BaseException) -> logging.LogRecord:
    """Beam's record of a component that raised ``exc`` (it logs the traceback)."""
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - any exception, as Beam logs it
        info = sys.exc_info()
    return logging.LogRecord(
        "apache_beam.runners.common", logging.ERROR, "common.py", 1, "failed", None, info
    )


def test_a_components_usage_error_shows_once_in_one_line_a_bugs_traceback_stays():
    from pipeline.commands.console import LibraryChatter

    keep = LibraryChatter().filter
    # the command's last line says it: "qatflow: error: strategy 'gpus': no GPU found ..."
    assert not keep(_failed_with(UsageError("strategy 'gpus': no GPU found")))
    assert not keep(_failed_with(SettingsError("train.strategy", "not allowed")))
    # a data error is one line too ("qatflow: error: .../annotations.json: annotation
    # file not found" after ExampleGen's Beam traceback, seen on 2026-12-04)
    assert not keep(_failed_with(DataError("annotations.json: annotation file not found")))
    assert keep(_failed_with(ZeroDivisionError("a bug")))
    assert keep(_failed_with(RuntimeError("a runtime error")))
