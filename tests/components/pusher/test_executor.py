"""Pusher executor: pushes blessed candidates once, refuses unblessed ones."""

import json
import os

import pytest

from tests.model_maker.core.detector_fixtures import write_tflite_artifact


def _artifact(kind, uri):
    art = kind()
    art.uri = str(uri)
    return art


@pytest.fixture()
def inputs(tmp_path):
    from tfx.types import standard_artifacts

    from components.artifacts import TFLiteModel

    tflite = _artifact(TFLiteModel, write_tflite_artifact(tmp_path / "tflite", {"qat_int8": False}))
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text('{"variants": []}')
    evaluation = _artifact(standard_artifacts.ModelEvaluation, tmp_path / "evaluation")
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    blessing.set_string_custom_property("candidate", "qat_int8")
    return tmp_path, tflite, evaluation, blessing


def _push(tmp_path, tflite, evaluation, blessing, run):
    from tfx.types import standard_artifacts

    from components.pusher.executor import Executor

    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / f"pushed-{run}")
    dest = str(tmp_path / "serving")
    Executor().Do(
        {"tflite": [tflite], "evaluation": [evaluation], "blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"destination": dest},
    )
    return pushed, dest


def test_blessed_candidate_is_pushed_once(inputs):
    tmp_path, tflite, evaluation, blessing = inputs
    blessing.set_int_custom_property("blessed", 1)
    pushed, dest = _push(tmp_path, tflite, evaluation, blessing, 1)
    assert os.listdir(dest) == ["v1"]
    assert sorted(os.listdir(os.path.join(dest, "v1"))) == [
        "labels.txt", "manifest.json", "metrics.json", "push.json", "qat_int8.tflite",
    ]  # fmt: skip
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_int_custom_property("new_version") == 1
    assert pushed.get_string_custom_property("pushed_destination") == os.path.join(dest, "v1")
    assert pushed.get_string_custom_property("pushed_version") == "v1"
    record = json.loads((tmp_path / "pushed-1" / "push.json").read_text())
    assert record["version"] == 1

    again, _ = _push(tmp_path, tflite, evaluation, blessing, 2)  # rerun of the same run
    assert os.listdir(dest) == ["v1"]
    assert again.get_int_custom_property("new_version") == 0
    assert again.get_string_custom_property("pushed_version") == "v1"


def test_unblessed_model_is_refused_with_the_reason(inputs, caplog):
    tmp_path, tflite, evaluation, blessing = inputs
    blessing.set_int_custom_property("blessed", 0)
    blessing.set_string_custom_property("reason", "drop 3.00 points, more than the allowed 1")
    with caplog.at_level("WARNING", logger="qatflow"):
        pushed, dest = _push(tmp_path, tflite, evaluation, blessing, 1)
    assert not os.path.exists(dest)
    assert pushed.get_int_custom_property("pushed") == 0
    assert "not blessed" in caplog.text and "more than the allowed" in caplog.text


def test_blessed_candidate_missing_from_the_manifest_is_a_data_error(inputs):
    from model_maker.core.errors import DataError

    tmp_path, tflite, evaluation, blessing = inputs
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_string_custom_property("candidate", "ptq_int8")  # the set holds qat_int8 only
    with pytest.raises(DataError, match="'ptq_int8' is not in"):
        _push(tmp_path, tflite, evaluation, blessing, 1)
    assert not os.path.exists(tmp_path / "serving")
