import subprocess
import sys

import pytest

from model_maker.core.data.split import check_ratios, hash_fraction, hash_split
from model_maker.core.errors import UsageError

RATIOS = {"train": 0.8, "eval": 0.2}


def test_hash_split_is_stable_across_processes():
    keys = [f"img_{i}.jpg" for i in range(50)]
    here = [hash_split(k, RATIOS) for k in keys]
    code = (
        "from model_maker.core.data.split import hash_split;"
        f"print(','.join(hash_split(k, {RATIOS!r}) for k in {keys!r}))"
    )
    # A new interpreter has a different str hash seed; the split must not change.
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert out.split(",") == here


def test_hash_split_follows_the_ratios():
    names = [hash_split(f"{i:06d}.jpg", RATIOS) for i in range(5000)]
    assert abs(names.count("eval") / len(names) - 0.2) < 0.02
    assert set(names) == {"train", "eval"}
    assert hash_split("x", {"train": 0.0, "eval": 1.0}) == "eval"


def test_hash_fraction_range():
    values = [hash_fraction(str(i)) for i in range(1000)]
    assert min(values) >= 0.0 and max(values) < 1.0


@pytest.mark.parametrize(
    "ratios, message",
    [({}, "at least one"), ({"a": 0.5, "b": 0.6}, "sum to 1"), ({"a": 1.5, "b": -0.5}, "between")],
)
def test_bad_ratios(ratios, message):
    with pytest.raises(UsageError, match=message):
        check_ratios(ratios)
