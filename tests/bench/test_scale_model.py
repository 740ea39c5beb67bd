"""The pure cost-model arithmetic of bench/bench_scale.py (bench/scale_model.py); no TensorFlow."""

import importlib.util
import math
import pathlib
import sys

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "scale_model.py"
_SPEC = importlib.util.spec_from_file_location("bench_scale_model", _PATH)
scale_model = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = scale_model  # dataclasses look their module up
_SPEC.loader.exec_module(scale_model)


def test_fit_recovers_known_startup_and_slope():
    items = [200, 1000, 4000]
    seconds = [12.5 + 0.031 * n for n in items]
    fit = scale_model.fit_linear(items, seconds)
    assert fit.startup_s == pytest.approx(12.5)
    assert fit.per_item_s == pytest.approx(0.031)
    assert fit.rms_residual_s == pytest.approx(0.0, abs=1e-9)
    assert fit.predict(118_287) == pytest.approx(12.5 + 0.031 * 118_287)


def test_fit_reports_the_residual_of_noisy_points():
    # y = 2 + 1 x, with +1 / -2 / +1 added: least squares over x = 0, 1, 2
    fit = scale_model.fit_linear([0, 1, 2], [3.0, 1.0, 5.0])
    assert fit.per_item_s == pytest.approx(1.0)
    assert fit.startup_s == pytest.approx(2.0)
    assert fit.rms_residual_s == pytest.approx(math.sqrt((1 + 4 + 1) / 3))
    assert fit.max_rel_residual == pytest.approx(2.0)  # |-2| / 1.0 at x = 1


@pytest.mark.parametrize(
    ("items", "seconds"), [([1], [1.0]), ([5, 5], [1.0, 2.0]), ([1, 2], [1.0])]
)
def test_fit_refuses_what_cannot_be_fitted(items, seconds):
    with pytest.raises(ValueError):
        scale_model.fit_linear(items, seconds)


def test_parallel_stage_shares_items_and_pays_startup_once():
    stage = scale_model.StageCost("ingest", startup_s=30.0, per_item_s=0.02, items=123_287)
    assert scale_model.stage_seconds(stage, 1) == pytest.approx(30 + 0.02 * 123_287)
    assert scale_model.stage_seconds(stage, 8) == pytest.approx(30 + 0.02 * 123_287 / 8)
    half = scale_model.StageCost("train", 10.0, 1.0, 640, efficiency=0.5)
    assert scale_model.stage_seconds(half, 64) == pytest.approx(10 + 640 / 32)


def test_serial_stage_ignores_workers():
    stage = scale_model.StageCost("convert", 90.0, 0.0, 0, parallel=False)
    assert scale_model.stage_seconds(stage, 1) == scale_model.stage_seconds(stage, 64) == 90.0


def test_extrapolation_hours_total_and_bottleneck():
    stages = [
        scale_model.StageCost("ingest", 36.0, 0.036, 100_000),  # 3600 s on 1 worker
        scale_model.StageCost("train", 0.0, 0.36, 100_000),  # 36,000 s on 1 worker
        scale_model.StageCost("convert", 1800.0, 0.0, 0, parallel=False),  # 0.5 h always
    ]
    result = scale_model.extrapolate(stages, [1, 8, 64])
    one = result[1]
    assert one["hours"]["ingest"] == pytest.approx((36 + 3600) / 3600)
    assert one["hours"]["train"] == pytest.approx(10.0)
    assert one["total_hours"] == pytest.approx(sum(one["hours"].values()))
    assert one["bottleneck"] == "train"
    assert result[8]["hours"]["train"] == pytest.approx(10.0 / 8)
    # at 64 workers training takes 0.156 h and conversion's fixed 0.5 h dominates
    assert result[64]["hours"]["train"] == pytest.approx(10.0 / 64)
    assert result[64]["bottleneck"] == "convert"


def test_crossover_workers_where_training_meets_conversion():
    train = scale_model.StageCost("train", 60.0, 0.5, 36_000, efficiency=0.5)  # 36,000 s of work
    # 60 + 36,000 / W = 600  ->  W = 36,000 / 540
    assert scale_model.crossover_workers(train, 600.0) == pytest.approx(36_000 / 540)
    assert scale_model.crossover_workers(train, 30.0) is None  # start-up alone is longer


def test_power_law_through_measured_points():
    # one point: proportional (exponent 1)
    assert scale_model.power_law({2.0: 10.0}) == pytest.approx((5.0, 1.0))
    assert scale_model.power_law_predict({2.0: 10.0}, 40.0) == pytest.approx(200.0)
    # two points of cost = 3 x size ** 0.5
    points = {4.0: 6.0, 100.0: 30.0}
    assert scale_model.power_law(points) == pytest.approx((3.0, 0.5))
    assert scale_model.power_law_predict(points, 16.0) == pytest.approx(12.0)
    with pytest.raises(ValueError):
        scale_model.power_law({1.0: 0.0})


def test_markdown_table_lists_every_stage_and_the_bottleneck():
    stages = [scale_model.StageCost("a", 0, 1.0, 3600), scale_model.StageCost("b", 60, 0, 0)]
    lines = scale_model.markdown_table("Lite0", scale_model.extrapolate(stages, [1, 8]), [1, 8])
    assert lines[0] == "| Lite0 stage | 1 worker | 8 workers |"
    assert lines[2] == "| a | 1.0 h | 7.5 min |"
    assert lines[-1] == "| bottleneck | a | a |"
    assert scale_model.format_hours(15 / 3600) == "15 s"
    assert scale_model.format_hours(1234.4) == "1,234 h"
