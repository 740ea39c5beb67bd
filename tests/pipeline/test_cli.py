import subprocess
import sys

import yaml

from pipeline.cli import main


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
