"""The label map: 1-based class ids (0 is background, as in the TF Object Detection API).

How ids are chosen, so they are stable from run to run:
- COCO: categories sorted by their original id and renumbered 1..K in that order
  (order-preserving; the original id is kept as ``source_id``);
- Pascal VOC and class folders: class names sorted, numbered 1..K;
- TFRecord: the ids already in the records (or in a ``label_map.json`` /
  ``label_map.pbtxt`` beside them) are kept.
The records' ``image/object/class/label`` and the category ids of the COCO
ground truth JSONs use these ids.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from model_maker.core.data import fileio
from model_maker.core.errors import DataError

ID_RULE = (
    "ids are 1-based (0 is background). COCO: categories sorted by original id, renumbered "
    "1..K (source_id keeps the original); VOC and class folders: names sorted, numbered 1..K; "
    "TFRecord: the ids found in the records are kept."
)


@dataclass(frozen=True)
class LabelClass:
    """One class of the label map.

    Attributes:
      id: 1-based id used in the records and the ground truth.
      name: class name.
      source_id: id in the source annotations (COCO category id), or None.
    """

    id: int
    name: str
    source_id: int | None = None


@dataclass(frozen=True)
class LabelMap:
    """Ordered classes with unique ids and names.

    Attributes:
      classes: the classes, sorted by id.
    """

    classes: tuple[LabelClass, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        names = [c.name for c in self.classes]
        if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
            raise DataError(f"label map: ids must be unique and >= 1, got {ids}")
        if len(set(names)) != len(names):
            raise DataError(f"label map: class names must be unique, got {names}")
        object.__setattr__(self, "classes", tuple(sorted(self.classes, key=lambda c: c.id)))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        """Sorted unique names numbered 1..K."""
        return cls(tuple(LabelClass(i, n) for i, n in enumerate(sorted(set(names)), start=1)))

    @classmethod
    def from_source_ids(cls, categories: Mapping[int, str]) -> LabelMap:
        """Source ids (e.g. COCO category ids) sorted and renumbered 1..K."""
        return cls(
            tuple(
                LabelClass(i, categories[sid], sid)
                for i, sid in enumerate(sorted(categories), start=1)
            )
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def id_of(self, name: str) -> int:
        for c in self.classes:
            if c.name == name:
                return c.id
        raise KeyError(name)

    def name_of(self, class_id: int) -> str:
        for c in self.classes:
            if c.id == class_id:
                return c.name
        raise KeyError(class_id)

    def name_to_id(self) -> dict[str, int]:
        return {c.name: c.id for c in self.classes}

    def to_json(self) -> dict:
        return {
            "id_rule": ID_RULE,
            "classes": [
                {"id": c.id, "name": c.name, "source_id": c.source_id} for c in self.classes
            ],
        }

    def coco_categories(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "supercategory": ""} for c in self.classes]

    def save(self, path: str) -> None:
        fileio.write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelMap:
        """Read ``label_map.json`` (this module's format) or a TF OD API ``.pbtxt``."""
        path = os.fspath(path)
        try:
            text = fileio.read_text(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read label map ({exc.strerror})") from None
        if path.endswith(".pbtxt"):
            return cls._from_pbtxt(text, path)
        try:
            data = json.loads(text)
            return cls(
                tuple(
                    LabelClass(int(c["id"]), str(c["name"]), c.get("source_id"))
                    for c in data["classes"]
                )
            )
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: not a label map ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_pbtxt(cls, text: str, path: str) -> LabelMap:
        # The TF OD API StringIntLabelMap text format: item { id: 1 name: 'x' display_name: ... }
        items = re.findall(r"item\s*\{([^}]*)\}", text)
        classes = []
        for i, body in enumerate(items):
            id_match = re.search(r"\bid\s*:\s*(\d+)", body)
            name_match = re.search(r"\b(display_name|name)\s*:\s*[\"']([^\"']*)[\"']", body)
            names = dict(re.findall(r"\b(display_name|name)\s*:\s*[\"']([^\"']*)[\"']", body))
            if not id_match or not name_match:
                raise DataError(f"{path}: item {i} needs an id and a name")
            name = names.get("name") or names.get("display_name", "")
            classes.append(LabelClass(int(id_match.group(1)), name))
        if not classes:
            raise DataError(f"{path}: no 'item {{ id: .. name: .. }}' entries")
        return cls(tuple(classes))
