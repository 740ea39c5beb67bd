import json

import pytest

from model_maker.core.errors import UsageError
from pipeline.cli import main
from pipeline.commands.data import beam_args_for, parse_splits


def test_demo_data_command(tmp_path, capsys):
    assert main(["-q", "demo-data", "--output", str(tmp_path), "--images", "3", "--seed", "9"]) == 0
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert len(data["images"]) == 3 and len(list((tmp_path / "images").iterdir())) == 3
    assert capsys.readouterr().out.startswith(f"3 images, {len(data['annotations'])} boxes")


def test_ingest_raccoon_from_the_command_line(raccoon_dir, tmp_path, capsys):
    argv = ["-q", "ingest", "--format", "voc", "--input", str(raccoon_dir)]
    assert main([*argv, "--output", str(tmp_path), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[3].split() == ["total", "200", "217"]
    assert "classes: 1=raccoon" in out and "converted_grayscale 3" in out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["total"] == {"images": 200, "boxes": 217}


def test_flags_override_the_config(tmp_path, capsys):
    main(["-q", "demo-data", "--output", str(tmp_path / "d"), "--images", "4"])
    config = tmp_path / "c.yaml"
    config.write_text(
        "data:\n  format: voc\n  input: /nowhere\n  split_ratios: {a: 1.0}\nrunner:\n"
        "  direct_num_workers: 1\n"
    )
    argv = ["-q", "ingest", "--config", str(config), "--format", "coco"]
    argv += ["--input", str(tmp_path / "d" / "images"), "--output", str(tmp_path / "o")]
    argv += ["--annotations", str(tmp_path / "d" / "annotations.json"), "--split", "x=0.5,y=0.5"]
    assert main([*argv, "--set", "data.keep_negatives=false"]) == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert set(stats["splits"]) == {"x", "y"} and stats["format"] == "coco"
    assert stats["total"]["images"] == 4


def test_bad_json_exits_1_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "images": [1,,]}')
    argv = [
        "ingest",
        "--input",
        str(tmp_path),
        "--annotations",
        str(bad),
        "--output",
        str(tmp_path),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}:2:" in err[0] and "invalid JSON" in err[0]
    assert main([*argv, "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["ingest", "--format", "voc", "--output", str(tmp_path)]) == 2
    assert "give --input" in capsys.readouterr().err
    argv = ["ingest", "--format", "voc", "--input", "x", "--output", str(tmp_path)]
    assert main([*argv, "--split", "a=0.5,b=val.txt"]) == 2
    assert "either fractions" in capsys.readouterr().err
    assert main([*argv, "--split", "a=0.5,b=0.2"]) == 2
    assert "sum to 1" in capsys.readouterr().err


def test_split_and_beam_arguments():
    assert parse_splits([[("train", "0.8"), ("eval", "0.2")]]) == ({"train": 0.8, "eval": 0.2}, {})
    assert parse_splits([[("train", "t.json")], [("val", "v.json")]]) == (
        {},
        {"train": "t.json", "val": "v.json"},
    )
    with pytest.raises(UsageError):
        parse_splits([[("a", "0.5"), ("b", "f.json")]])
    assert beam_args_for(2, []) == ["--direct_num_workers=2"]
    assert beam_args_for(2, ["--runner=FlinkRunner"]) == ["--runner=FlinkRunner"]
