import math
from dataclasses import dataclass, field

import pytest

from model_maker.core.errors import SettingsError, UsageError
from model_maker.core.settings import (
    Settings,
    build,
    check_range,
    from_json,
    replace,
    to_dict,
    to_json,
)


@dataclass(frozen=True)
class Inner(Settings):
    rate: float = 0.5
    ratios: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.2})

    def validate(self) -> None:
        check_range("rate", self.rate, 0.0, 1.0)


@dataclass(frozen=True)
class Outer(Settings):
    name: str = "x"
    count: int = 1
    inner: Inner = Inner()
    names: tuple[str, ...] = ("a",)

    def validate(self) -> None:
        check_range("count", self.count, 1)


def test_a_settings_object_is_valid_once_it_exists():
    with pytest.raises(SettingsError, match=r"^count: 0 must be at least 1$"):
        Outer(count=0)
    with pytest.raises(SettingsError, match=r"^rate: nan: must be a finite number|rate: must be"):
        Inner(rate=math.nan)
    with pytest.raises(SettingsError, match=r"ratios\.eval: must be a finite number"):
        Inner(ratios={"train": 1.0, "eval": math.inf})
    assert isinstance(SettingsError("k", "r"), UsageError)


def test_build_names_the_full_dotted_key():
    with pytest.raises(SettingsError, match=r"^inner\.rate: 2\.0 must be in \[0, 1\]$"):
        build(Outer, {"inner": {"rate": 2}})
    with pytest.raises(SettingsError, match=r"^inner\.rat: unknown key; did you mean 'rate'"):
        build(Outer, {"inner": {"rat": 0.1}})
    with pytest.raises(SettingsError, match=r"^count: expected an integer, got 'two'$"):
        build(Outer, {"count": "two"})
    with pytest.raises(SettingsError, match=r"^names\[1\]: expected str"):
        build(Outer, {"names": ["a", None]})
    built = build(Outer, {"inner": {"rate": 1}, "names": "b"})
    assert built.inner.rate == 1.0 and isinstance(built.inner.rate, float)
    assert built.names == ("b",)


def test_json_round_trip_keeps_values_and_mapping_order():
    # The order of split ratios is meaning (hash slices of [0, 1) in that order): a
    # component must receive {"train", "eval"} as given, not sorted.
    options = Outer(inner=Inner(ratios={"train": 0.7, "eval": 0.1, "another": 0.2}))
    text = to_json(options)
    again = from_json(Outer, text)
    assert again == options
    assert list(again.inner.ratios) == ["train", "eval", "another"]
    assert to_dict(again)["names"] == ["a"]  # plain lists, YAML- and JSON-ready


def test_from_json_refuses_what_build_refuses():
    with pytest.raises(SettingsError, match="not a JSON document"):
        from_json(Outer, "{nope")
    with pytest.raises(SettingsError, match="expected a JSON object"):
        from_json(Outer, "[1]")
    with pytest.raises(SettingsError, match=r"inner\.rate"):
        from_json(Outer, '{"inner": {"rate": -1}}')
    assert from_json(Outer, "") == Outer()


def test_replace_checks_like_build():
    assert replace(Outer(), count=3).count == 3
    with pytest.raises(SettingsError, match=r"^data\.count: 0 must be at least 1$"):
        replace(Outer(), "data", count=0)
