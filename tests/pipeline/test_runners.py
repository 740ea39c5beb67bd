import pytest

from model_maker.core.errors import UsageError
from pipeline.config import load_config
from pipeline.runners import run_local


def test_run_local_checks_the_machine_before_any_work(tmp_path, monkeypatch):
    """A notebook calling run_local directly gets the same preflight as `qatflow run`."""
    monkeypatch.setenv("QATFLOW_PRETRAINED_DIR", str(tmp_path / "empty-cache"))
    config = load_config(
        overrides=[
            f"runner.pipeline_root={tmp_path / 'root'}",
            f"data.input={tmp_path / 'images'}",
            f"data.annotations={tmp_path / 'annotations.json'}",
            "model.uri=imagenet",
        ]
    )
    with pytest.raises(UsageError, match=r"model\.uri 'imagenet': .*make pretrained"):
        run_local(config)
    assert not (tmp_path / "root").exists()
