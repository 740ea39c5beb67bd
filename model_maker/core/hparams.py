"""Hyper-parameter overrides in the three forms of the Model Maker API.

``hparams`` may be a mapping, a ``"k=v,k2=v2"`` string (dotted keys reach into
nested groups, as in google/automl) or the path of a YAML file holding a
mapping. All three parse to a nested ``dict``; values in strings are read as
YAML scalars, so ``"lr=0.1,use_xla=true,name=foo"`` gives float, bool and str.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from model_maker.core.errors import UsageError


class HParamsError(UsageError):
    """An hparams value that cannot be parsed or names an unknown key."""


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise HParamsError(f"hparams key {dotted!r}: {part!r} is a value, not a group")
        node = child
    node[parts[-1]] = value


def _split_pairs(text: str) -> list[str]:
    """Split ``k=v,k2=v2`` on commas that start a new ``key=`` pair.

    A comma followed by text without ``=`` belongs to the previous value, so
    ``"sizes=1,2,3,lr=0.1"`` reads ``sizes`` as ``1,2,3``.
    """
    pairs: list[str] = []
    for chunk in text.split(","):
        if "=" in chunk or not pairs:
            pairs.append(chunk)
        else:
            pairs[-1] += "," + chunk
    return pairs


def parse_scalar(text: str) -> Any:
    """Read one override value the way YAML reads a scalar (``1`` -> int, ``a,b`` -> str)."""
    text = text.strip()
    if "," in text and not text.startswith(("[", "{")):
        return [parse_scalar(part) for part in text.split(",")]
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def parse_hparams(hparams: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    """Parse ``hparams`` given as a dict, a ``"k=v,k2=v2"`` string or a YAML file path.

    Returns a new nested dict; ``None`` and ``""`` give ``{}``.

    Raises:
        HParamsError: on a malformed pair, an unreadable file or a YAML file
            that does not hold a mapping.
    """
    if hparams is None:
        return {}
    if isinstance(hparams, Mapping):
        out: dict[str, Any] = {}
        for key, value in hparams.items():
            if isinstance(value, Mapping):
                value = parse_hparams(value)
            _set_dotted(out, str(key), value)
        return out
    text = os.fspath(hparams).strip()
    if not text:
        return {}
    if text.endswith((".yaml", ".yml")) or ("=" not in text and os.path.exists(text)):
        if not os.path.isfile(text):
            raise HParamsError(f"hparams file not found: {text}")
        with open(text, encoding="utf-8") as fh:
            try:
                loaded = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise HParamsError(f"{text}: invalid YAML: {exc}") from None
        if loaded is None:
            return {}
        if not isinstance(loaded, Mapping):
            raise HParamsError(
                f"{text}: hparams YAML must hold a mapping, got {type(loaded).__name__}"
            )
        return parse_hparams(loaded)
    out = {}
    for pair in _split_pairs(text):
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HParamsError(f"hparams entry {pair!r} is not of the form key=value")
        _set_dotted(out, key, parse_scalar(value))
    return out


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the nearest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_keys(
    values: Mapping[str, Any], allowed: Mapping[str, Any], where: str = "hparams"
) -> None:
    """Raise ``HParamsError`` for any key of ``values`` not in ``allowed`` (recursively)."""
    for key, value in values.items():
        if key not in allowed:
            raise HParamsError(
                f"unknown {where} key {key!r}{suggest(key, allowed)} "
                f"(valid keys: {', '.join(sorted(allowed))})"
            )
        if isinstance(value, Mapping) and isinstance(allowed[key], Mapping):
            check_keys(value, allowed[key], f"{where}.{key}")
