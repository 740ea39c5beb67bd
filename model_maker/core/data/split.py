"""Deterministic hash split: the same key lands in the same split on any machine or worker."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from model_maker.core.errors import UsageError


def check_ratios(ratios: Mapping[str, float]) -> None:
    """Raise ``UsageError`` unless ``ratios`` is a non-empty mapping of fractions summing to 1."""
    if not ratios:
        raise UsageError("split ratios: give at least one split")
    for name, ratio in ratios.items():
        if not 0.0 <= ratio <= 1.0:
            raise UsageError(f"split ratio {name}={ratio}: must be between 0 and 1")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise UsageError(f"split ratios must sum to 1, got {sum(ratios.values()):g}")


def hash_fraction(key: str) -> float:
    """A uniform number in [0, 1) derived from SHA-256 of ``key`` (stable across processes)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def hash_split(key: str, ratios: Mapping[str, float]) -> str:
    """The split of ``key``: splits take consecutive slices of [0, 1) in the order given."""
    fraction = hash_fraction(key)
    cumulative = 0.0
    last = ""
    for name, ratio in ratios.items():
        if ratio <= 0:
            continue
        cumulative += ratio
        last = name
        if fraction < cumulative:
            return name
    return last
