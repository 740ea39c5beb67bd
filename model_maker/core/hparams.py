"""Hyper-parameter overrides in the three forms of the Model Maker API.

``hparams`` may be a mapping, a ``"k=v,k2=v2"`` string (dotted keys reach into
nested groups, as in google/automl) or the path of a YAML file holding a
mapping. All three parse to a nested ``dict``; values in strings are read as
YAML scalars, so ``"lr=0.1,use_xla=true,name=foo"`` gives float, bool and str.

YAML here (hparams files, override values, and the pipeline config through
:func:`load_yaml`) is read without anchors and aliases: no settings file needs
them, and nested aliases ("billion laughs") expand a few hundred bytes into
billions of nodes that every later walk over the values would visit.
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


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors (``&name``) and aliases (``*name``)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:  # an AliasEvent or an anchored node
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML anchors and aliases (&name, *name) are not allowed in settings",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def load_yaml(stream: Any) -> Any:
    """``yaml.safe_load`` without anchors and aliases (a ``yaml.MarkedYAMLError`` on one)."""
    return yaml.load(stream, Loader=_NoAliasLoader)  # a SafeLoader: plain data only


def yaml_error_line(path: str, exc: yaml.YAMLError) -> str:
    """One line for a YAML error in the file ``path``: ``path:line:column: invalid YAML: ...``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        return f"{where}: invalid YAML: {exc.problem or exc.context}"
    return f"{path}: invalid YAML: {' '.join(str(exc).split())}"


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
    """Read one override value the way YAML reads a scalar (``1`` -> int, ``a,b`` -> str).

    Text YAML cannot read (an alias among them) is kept as the string it is.
    """
    text = text.strip()
    if "," in text and not text.startswith(("[", "{")):
        return [parse_scalar(part) for part in text.split(",")]
    try:
        return load_yaml(text) if text else ""
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
                loaded = load_yaml(fh)
            except yaml.YAMLError as exc:
                raise HParamsError(yaml_error_line(text, exc)) from None
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
