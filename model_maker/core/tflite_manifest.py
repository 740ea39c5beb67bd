"""The TFLite set's contract: ``manifest.json`` and ``labels.txt``, written and read here only.

The TFLiteConverter writes a folder (the ``TFLiteModel`` artifact, see
``components/artifacts.py``); the Evaluator, the Pusher, ``qatflow
evaluate-tflite`` and the dashboard read it. Layout::

    <dir>/<variant>.tflite       one per variant
    <dir>/<variant>.anchors.npy  raw (no-NMS) detector variants only
    <dir>/labels.txt             line k = name of model class k-1 (label_map id k)
    <dir>/manifest.json          {"task": "object_detection" | "image_classification",
                                  "variants": [entry, ...], "labels_file": "labels.txt",
                                  "num_classes": C, "metadata": ...}

Each entry holds at least ``variant`` and ``file``; the converter adds
``bytes``, ``input`` (name, shape, dtype, quantization, ``mean``/``std``),
``outputs``, ``with_nms``, ``postprocess`` (the :class:`NMSOptions` the op was
built with), ``quantization`` and, for raw variants, ``anchors_file``.
No numpy or TensorFlow here; files go through :mod:`model_maker.core.data.fileio`
(local paths and gfile URLs alike).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from model_maker.core.data import fileio
from model_maker.core.detection_postprocess import NMSOptions
from model_maker.core.errors import DataError, SettingsError
from model_maker.core.settings import from_json

MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"


def labels_text(label_map: Mapping[int, str], num_classes: int) -> str:
    """``labels.txt``: one name per line for ids 1..num_classes (``class_<id>`` if unnamed)."""
    return "".join(f"{label_map.get(i, f'class_{i}')}\n" for i in range(1, num_classes + 1))


def write_tflite_set_files(
    output_dir: str,
    entries: Sequence[Mapping[str, Any]],
    *,
    label_map: Mapping[int, str],
    num_classes: int,
    metadata: Any,
    task: str = "object_detection",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``labels.txt`` and ``manifest.json`` into ``output_dir``; return the manifest.

    ``task`` tells readers which evaluation applies (a manifest without it is a
    detector's); ``extra`` adds top-level keys.
    """
    fileio.write_text(fileio.join(output_dir, LABELS_FILE), labels_text(label_map, num_classes))
    manifest = {
        "task": task,
        **dict(extra or {}),
        "variants": [dict(e) for e in entries],
        "labels_file": LABELS_FILE,
        "num_classes": num_classes,
        "metadata": metadata,
    }
    fileio.write_text(fileio.join(output_dir, MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest_document(tflite_dir: str) -> dict[str, Any]:
    """The whole ``manifest.json`` of ``tflite_dir``, checked.

    Raises:
      DataError: no manifest, not JSON, no variants, or an entry without ``variant``/``file``.
    """
    path = fileio.join(tflite_dir, MANIFEST_FILE)
    if not fileio.exists(path):
        raise DataError(f"no {MANIFEST_FILE} in the TFLite folder {tflite_dir}")
    try:
        manifest = json.loads(fileio.read_text(path))
    except ValueError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    entries = manifest.get("variants") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected {{'variants': [...]}} with at least one variant")
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("variant") or not entry.get("file"):
            raise DataError(f"{path}: every variant needs 'variant' and 'file', got {entry}")
    return manifest


def manifest_task(tflite_dir: str) -> str:
    """The task of a TFLite set (``object_detection`` when its manifest predates the key)."""
    return str(read_manifest_document(tflite_dir).get("task") or "object_detection")


def read_manifest(tflite_dir: str) -> list[dict[str, Any]]:
    """The ``variants`` entries of ``<tflite_dir>/manifest.json``, checked."""
    return list(read_manifest_document(tflite_dir)["variants"])


def variant_entry(tflite_dir: str, variant: str) -> dict[str, Any]:
    """The manifest entry of ``variant``.

    Raises:
      DataError: the set has no such variant.
    """
    entries = read_manifest(tflite_dir)
    for entry in entries:
        if entry["variant"] == variant:
            return entry
    names = ", ".join(e["variant"] for e in entries)
    raise DataError(f"variant {variant!r} is not in {tflite_dir}/{MANIFEST_FILE} (it has {names})")


def manifest_nms(entry: Mapping[str, Any]) -> NMSOptions:
    """The post-processing settings a manifest entry was converted with (defaults if absent)."""
    try:
        return from_json(NMSOptions, entry.get("postprocess") or {}, "postprocess")
    except SettingsError as exc:
        raise DataError(f"manifest entry {entry.get('variant')!r}: {exc}") from None
