"""The small outputs of ingestion: per-split COCO ground truth, label_map.json, stats.json."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from model_maker.core.data import fileio
from model_maker.core.data.labels import LabelClass, LabelMap
from model_maker.core.data.process import ImageSummary
from model_maker.core.data.source import Issue
from model_maker.core.errors import DataError

LABEL_MAP_FILE = "label_map.json"
STATS_FILE = "stats.json"
ANNOTATIONS_SUFFIX = "_annotations.json"
#: A split is imbalanced when its largest class has more than this many times the
#: images of its smallest (classification data; classes with no image aside).
IMBALANCE_RATIO = 3.0


def annotations_file(split: str) -> str:
    return f"{split}{ANNOTATIONS_SUFFIX}"


def _json_text(path: str, data: object, indent: int | None = None) -> str:
    """``json.dumps`` that refuses NaN and infinities (invalid JSON for every strict parser).

    The readers and ``process_image`` keep them out; this is the last guard.
    """
    try:
        return json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:
        raise DataError(
            f"{path}: a number that is not finite (NaN or infinity) cannot be written as JSON"
        ) from None


def label_map_from_pairs(
    pairs: Iterable[tuple[int, str]], where: str = "records"
) -> tuple[LabelMap, list[Issue]]:
    """Label map of (id, name) pairs seen in records; an id with two names is an error issue."""
    names: dict[int, set[str]] = defaultdict(set)
    for class_id, name in pairs:
        names[class_id].add(name or str(class_id))
    issues = [
        Issue("error", where, f"{where}: class id {i} has several names: {', '.join(sorted(n))}")
        for i, n in sorted(names.items())
        if len(n) > 1
    ]
    return LabelMap(tuple(LabelClass(i, sorted(n)[0]) for i, n in sorted(names.items()))), issues


def class_balance(
    per_split: Mapping[str, Mapping], class_names: Sequence[str]
) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Imbalance and empty classes of classification splits, from stats.json's ``splits``.

    Returns ``(imbalance, empty_classes)``: ``imbalance[split]`` is
    ``{"max_class", "max", "min_class", "min", "ratio"}`` for each split whose
    largest class has more than ``IMBALANCE_RATIO`` times the images of its
    smallest non-empty one (ties go to the first name in sorted order);
    ``empty_classes[split]`` lists, sorted, the classes of ``class_names`` with no
    image in the split. Splits without either are left out.
    """
    imbalance: dict[str, dict] = {}
    empty: dict[str, list[str]] = {}
    for split, entry in per_split.items():
        counts = {
            name: entry["classes"].get(name, {}).get("images", 0) for name in sorted(class_names)
        }
        missing = [name for name, n in counts.items() if n == 0]
        if missing:
            empty[split] = missing
        present = {name: n for name, n in counts.items() if n > 0}
        if len(present) < 2:
            continue
        top = max(present, key=present.__getitem__)
        low = min(present, key=present.__getitem__)
        if present[top] > IMBALANCE_RATIO * present[low]:
            imbalance[split] = {
                "max_class": top,
                "max": present[top],
                "min_class": low,
                "min": present[low],
                "ratio": round(present[top] / present[low], 2),
            }
    return imbalance, empty


def _duplicate_files(summaries: Sequence[ImageSummary]) -> list[Issue]:
    """One ``duplicate_file_name`` issue per written image whose file an image with a lower
    id has already (``summaries`` sorted by image id)."""
    first: dict[str, int] = {}
    issues = []
    for s in summaries:
        if s.image is None:
            continue
        name = s.image["file_name"]
        if name in first and first[name] != s.image_id:
            detail = f"image id {s.image_id}, also image id {first[name]}"
            issues.append(Issue("duplicate_file_name", name, detail, s.split))
        first.setdefault(name, s.image_id)
    return issues


def write_outputs(
    output: str,
    summaries: Sequence[ImageSummary],
    label_map: LabelMap,
    splits: Sequence[str],
    extra_issues: Sequence[Issue] = (),
    info: dict | None = None,
) -> dict:
    """Write ``<split>_annotations.json`` per split, ``label_map.json`` and ``stats.json``.

    Duplicate image ids become error issues; one file under several image ids becomes
    a ``duplicate_file_name`` issue per extra id (each image is written). Annotation
    ids are numbered 1..N over all splits in image id order. For classification data (records with
    an image-level class) stats.json's ``imbalance`` and ``empty_classes`` hold
    :func:`class_balance`'s result; for detection data both are empty.
    Returns the stats dict.

    Raises:
      DataError: a NaN or infinite number in what would be written (naming the
        file); nothing is written then.
    """
    summaries = sorted(summaries, key=lambda s: (s.image_id, s.split))
    issues = list(extra_issues)
    seen: dict[int, ImageSummary] = {}
    for s in summaries:
        if s.image is None:
            continue
        if s.image_id in seen:
            first = seen[s.image_id].image
            issues.append(
                Issue(
                    "error",
                    f"image id {s.image_id}",
                    f"image id {s.image_id}: duplicate image id "
                    f"({first['file_name']} and {s.image['file_name']})",
                    s.split,
                )
            )
        seen[s.image_id] = s
    issues += _duplicate_files(summaries)
    for s in summaries:
        issues.extend(s.issues)

    names = {c.id: c.name for c in label_map.classes}
    gts = {
        split: {
            "info": {"description": f"qatflow ground truth, split {split}"},
            "images": [],
            "annotations": [],
            "categories": label_map.coco_categories(),
        }
        for split in splits
    }
    per_split = {
        split: {"images": 0, "boxes": 0, "negatives": 0, "classes": {}} for split in splits
    }
    next_id = 1
    for s in summaries:
        if s.image is None:
            continue
        gt, stats = gts[s.split], per_split[s.split]
        gt["images"].append(s.image)
        stats["images"] += 1
        if not s.annotations and not s.class_id:
            stats["negatives"] += 1
        class_images = Counter({names.get(s.class_id, str(s.class_id)): 0} if s.class_id else {})
        for ann in s.annotations:
            gt["annotations"].append({"id": next_id, **ann})
            next_id += 1
            class_images[names.get(ann["category_id"], str(ann["category_id"]))] += 1
        stats["boxes"] += len(s.annotations)
        for name, boxes in class_images.items():
            entry = stats["classes"].setdefault(name, {"images": 0, "boxes": 0})
            entry["images"] += 1
            entry["boxes"] += boxes

    # Every text is made before anything is written, so that a refused number leaves no
    # half-written output.
    gt_texts = {}
    for split, gt in gts.items():
        path = fileio.join(output, annotations_file(split))
        gt_texts[path] = _json_text(path, gt)
    issues.sort(key=lambda i: (i.kind != "error", i.where, i.kind, i.detail))
    classification = any(s.class_id for s in summaries if s.image is not None)
    imbalance, empty = class_balance(per_split, label_map.names) if classification else ({}, {})
    stats = {
        **(info or {}),
        "splits": per_split,
        "total": {
            "images": sum(s["images"] for s in per_split.values()),
            "boxes": sum(s["boxes"] for s in per_split.values()),
        },
        "issue_counts": dict(sorted(Counter(i.kind for i in issues).items())),
        "issues": [
            {"kind": i.kind, "where": i.where, "detail": i.detail, "split": i.split} for i in issues
        ],
        "imbalance": imbalance,
        "empty_classes": empty,
    }
    stats_path = fileio.join(output, STATS_FILE)
    stats_text = _json_text(stats_path, stats, indent=1) + "\n"
    fileio.makedirs(output)
    for path, text in gt_texts.items():
        fileio.write_text(path, text)
    label_map.save(fileio.join(output, LABEL_MAP_FILE))
    fileio.write_text(stats_path, stats_text)
    return stats
