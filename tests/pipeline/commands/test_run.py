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
