"""Training curves read back from TensorBoard event files written with tf.summary."""

from __future__ import annotations

import os

import pytest
from store_builder import training_scalars

from dashboard import tensorboard


def test_scalars_match_what_was_logged(small_root):
    _, built = small_root
    run = built[1]
    series = tensorboard.read_scalars(run.log_dir)
    expected = training_scalars(run.spec)
    got = {(s.split, s.tag): s for s in series}
    assert set(got) == {(split, tag) for split, tags in expected.items() for tag in tags}
    for split, tags in expected.items():
        for tag, points in tags.items():
            s = got[(split, tag)]
            assert s.steps == [step for step, _ in points]
            assert s.values == pytest.approx([v for _, v in points], rel=1e-6)
    assert got[("validation", "epoch_AP")].name == "AP"
    assert len(got[("train", "epoch_loss")].steps) == 6  # epochs of that run


def test_truncated_file_keeps_earlier_events_and_signature_changes(small_root, tmp_path):
    _, built = small_root
    [source] = [f for f in tensorboard.event_files(built[0].log_dir) if "/train/" in f]
    data = open(source, "rb").read()
    target = tmp_path / "train" / os.path.basename(source)
    target.parent.mkdir()
    target.write_bytes(data[: len(data) - 7])  # the last record cut short
    before = tensorboard.signature(str(tmp_path))
    [loss] = [s for s in tensorboard.read_scalars(str(tmp_path)) if s.tag == "epoch_loss"]
    assert loss.steps[:3] == [1, 2, 3] and loss.values[0] == pytest.approx(2.0)
    target.write_bytes(data)
    assert tensorboard.signature(str(tmp_path)) != before
    assert tensorboard.read_scalars(str(tmp_path / "nowhere")) == []
