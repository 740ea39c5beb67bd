"""The machinery behind every settings dataclass of the library.

Each setting of qatflow is defined once: a field of a frozen dataclass that
derives from :class:`Settings`, with its default, its unit in the
``Attributes:`` docstring and its rule in ``validate()``. Constructing the
object validates it (every float field, and every float inside a list or a
mapping, must be finite; then the class's own rules), so an object that
exists is valid, wherever it was built: from the pipeline config, from a
component's JSON options property, or in a notebook.

:func:`build` makes such an object from plain data (YAML, JSON, ``--set``)
strictly: unknown keys are errors with a suggestion, values are checked
against the field's annotation, and the key of a failing setting is the full
dotted path (``qat.learning_rate``). :func:`to_json` / :func:`from_json`
carry an object through a TFX execution property unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from model_maker.core.errors import SettingsError
from model_maker.core.hparams import suggest


class Settings:
    """Base of the settings dataclasses: validates on construction.

    Subclasses are ``@dataclass(frozen=True)`` and override :meth:`validate`,
    raising :class:`SettingsError` with the field's name as the key.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check_finite(f.name, getattr(self, f.name))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingsError` for a value this class does not accept."""


# --- rules ------------------------------------------------------------------


def check_finite(key: str, value: Any) -> None:
    """Reject NaN and infinities in ``value`` (a float, or floats in lists/mappings)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(key, f"must be a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_finite(f"{key}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_finite(f"{key}[{i}]", v)


def check_range(
    key: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """``low <= value <= high`` (``<`` where open); None leaves a side unbounded."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
        if low is not None and high is not None:
            bound = f"in {left}, {right}"
        elif low is not None:
            bound = f"{'greater than' if low_open else 'at least'} {low:g}"
        else:
            bound = f"{'less than' if high_open else 'at most'} {high:g}"
        raise SettingsError(key, f"{value!r} must be {bound}")


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> None:
    """``value`` is one of ``allowed``; else an error with a suggestion."""
    if value not in allowed:
        raise SettingsError(
            key,
            f"{value!r} is not allowed{suggest(str(value), [str(a) for a in allowed])} "
            f"(allowed: {', '.join(str(a) for a in allowed)})",
        )


def check_name(key: str, value: str) -> None:
    """A name used in file and folder names: letters, digits, ``_``, ``-`` and ``.``."""
    if not value or not all(c.isalnum() or c in "_-." for c in value) or value in (".", ".."):
        raise SettingsError(
            key, f"{value!r} is not a valid name (letters, digits, '_', '-', '.'; no spaces)"
        )


# --- plain data <-> settings ---------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints widen to float)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise SettingsError(key, f"expected a mapping, got {value!r}")
        return build(tp, value, key)
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise SettingsError(key, f"expected a list, got {value!r}")
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        _, val_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise SettingsError(key, f"expected a mapping, got {value!r}")
        return {str(k): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except SettingsError:
                continue
        raise SettingsError(key, f"{value!r} is not a {tp}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "1e-8" as a string; accept numbers written as text.
        try:
            return float(value)
        except ValueError:
            raise SettingsError(key, f"expected a number, got {value!r}") from None
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if tp is bool and not isinstance(value, bool):
        raise SettingsError(key, f"expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingsError(key, f"expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise SettingsError(key, f"expected {_type_name(tp)}, got {value!r}")
    return value


T = typing.TypeVar("T")


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """A ``cls`` from ``values`` (a subset of its fields; the rest keep their defaults).

    Raises:
      SettingsError: an unknown key (with the nearest valid one), a value of the
        wrong type, or a value the class's rules reject; the key is the full
        dotted path under ``prefix``.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    kwargs = {}
    where = prefix or "the top level"
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise SettingsError(
                full,
                f"unknown key{suggest(str(key), names)} (valid keys under {where}: "
                f"{', '.join(names)})",
            )
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except SettingsError as exc:
        raise exc.prefixed(prefix) if prefix else exc from None


def replace(obj: T, prefix: str = "", **changes: Any) -> T:
    """``dataclasses.replace`` with the same strict checks as :func:`build`."""
    values = {**to_dict(obj, shallow=True), **changes}
    return build(type(obj), values, prefix)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(obj: Any, shallow: bool = False) -> dict[str, Any]:
    """Plain data (lists, dicts, scalars) of a settings object, YAML- and JSON-ready."""
    if shallow:
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return _plain(obj)


def to_json(obj: Any) -> str:
    """JSON of a settings object: a TFX execution property.

    Keys keep their order (fields in declaration order, mappings as given): the
    order of a mapping can carry meaning (``split_ratios`` hands out slices of
    [0, 1) in the order the splits are given), and it is deterministic.
    """
    return json.dumps(to_dict(obj))


def from_json(cls: type[T], text: str | Mapping[str, Any] | None, key: str = "") -> T:
    """The ``cls`` that :func:`to_json` wrote (``None``/"" gives the defaults)."""
    if text in (None, ""):
        return build(cls, {}, key)
    if isinstance(text, str):
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise SettingsError(key, f"not a JSON document: {exc}") from None
    else:
        values = text
    if not isinstance(values, Mapping):
        raise SettingsError(key, f"expected a JSON object, got {type(values).__name__}")
    return build(cls, values, key)
