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
