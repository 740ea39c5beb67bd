import os

from pipeline.cli import build_parser, main
from pipeline.commands.common import config_from_args
from pipeline.runners import preflight


def _run_args(tmp_path, uri):
    return [
        "run",
        "--set", f"runner.pipeline_root={tmp_path / 'root'}",
        "--set", f"data.input={tmp_path / 'images'}",
        "--set", f"data.annotations={tmp_path / 'annotations.json'}",
        "--set", f"model.uri={uri}",
    ]  # fmt: skip


def test_run_without_cached_imagenet_weights_fails_before_the_pipeline(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("QATFLOW_PRETRAINED_DIR", str(tmp_path / "empty-cache"))
    for uri in ("imagenet", "pretrained://efficientnet-lite0"):
        assert main(_run_args(tmp_path, uri)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert f"model.uri '{uri}'" in err[0] and "make pretrained" in err[0]
        assert "efficientnet-lite0.npz" in err[0]
        # Nothing ran: no resolved config, no ML Metadata store, no component output.
        assert not (tmp_path / "root").exists()


def test_run_preflight_passes_with_the_weights_cached(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "efficientnet-lite0.npz").write_bytes(b"")
    monkeypatch.setenv("QATFLOW_PRETRAINED_DIR", str(cache))
    args = build_parser().parse_args(_run_args(tmp_path, "imagenet"))
    preflight(config_from_args(args))  # no error
    args = build_parser().parse_args(_run_args(tmp_path, ""))
    monkeypatch.setenv("QATFLOW_PRETRAINED_DIR", str(tmp_path / "empty-cache"))
    preflight(config_from_args(args))  # random init needs no cache


def test_run_quiets_tensorflow_before_loading_it_and_v_leaves_it_be(tmp_path, monkeypatch):
    # Issue 20: set before anything imports TensorFlow (here the run stops at the
    # preflight), so this process and Beam's worker processes, which inherit the
    # environment, start with it. The user's own value wins; -v sets nothing.
    monkeypatch.setenv("QATFLOW_PRETRAINED_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert main(["-v", *_run_args(tmp_path, "imagenet")]) == 2
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert main(_run_args(tmp_path, "imagenet")) == 2
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert main(_run_args(tmp_path, "imagenet")) == 2
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
