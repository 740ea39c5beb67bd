"""The small outputs of ingestion: per-split COCO ground truth, label_map.json, stats.json."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
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
        raise _nonfinite(path) from None


def _nonfinite(path: str) -> DataError:
    return DataError(
        f"{path}: a number that is not finite (NaN or infinity) cannot be written as JSON"
    )


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


def write_outputs(
    output: str,
    summaries: Sequence[ImageSummary],
    label_map: LabelMap,
    splits: Sequence[str],
    extra_issues: Sequence[Issue] = (),
    info: dict | None = None,
) -> dict:
    """Write ``<split>_annotations.json`` per split, ``label_map.json`` and ``stats.json``
    from summaries in memory (:func:`write_sorted_outputs` once they are sorted by image
    id and split)."""
    ordered = sorted(summaries, key=lambda s: (s.image_id, s.split))
    return write_sorted_outputs(output, ordered, label_map, splits, extra_issues, info)


def write_sorted_outputs(
    output: str,
    summaries: Iterable[ImageSummary],
    label_map: LabelMap,
    splits: Sequence[str],
    extra_issues: Sequence[Issue] = (),
    info: dict | None = None,
) -> dict:
    """Write ``<split>_annotations.json`` per split, ``label_map.json`` and ``stats.json``
    in one pass over ``summaries``, sorted by (image id, split).

    Duplicate image ids become error issues; one file under several image ids becomes
    a ``duplicate_file_name`` issue per extra id (each image is written). Annotation
    ids are numbered 1..N over all splits in image id order. For classification data (records with
    an image-level class) stats.json's ``imbalance`` and ``empty_classes`` hold
    :func:`class_balance`'s result; for detection data both are empty.
    Returns the stats dict.

    Memory holds the counts, the issues and one file name per written image (for the
    duplicate check), never the summaries: each split's ``images`` and ``annotations``
    go to local temporary files during the pass and are joined into the final file at
    the end, byte for byte what ``json.dumps`` of the whole ground truth gives.

    Raises:
      DataError: a NaN or infinite number in what would be written (naming the
        file); nothing is written then.
    """
    names = {c.id: c.name for c in label_map.classes}
    paths = {split: fileio.join(output, annotations_file(split)) for split in splits}
    per_split = {
        split: {"images": 0, "boxes": 0, "negatives": 0, "classes": {}} for split in splits
    }
    id_issues: list[Issue] = []
    file_issues: list[Issue] = []
    own_issues: list[Issue] = []
    first_id: dict[str, int] = {}  # file name -> lowest image id written with it
    last: ImageSummary | None = None  # the last written summary (duplicates are adjacent)
    refused: set[str] = set()
    classification = False
    next_id = 1
    with tempfile.TemporaryDirectory(prefix="qatflow-gt-") as tmp, contextlib.ExitStack() as stack:
        pieces = {
            split: [
                stack.enter_context(open(os.path.join(tmp, f"{i}.{part}"), "w", encoding="utf-8"))
                for part in ("images", "annotations")
            ]
            for i, split in enumerate(splits)
        }
        counts = {split: [0, 0] for split in splits}

        def put(split: str, part: int, item: dict) -> None:
            if split in refused:
                return
            try:
                text = json.dumps(item, allow_nan=False)
            except ValueError:
                refused.add(split)
                return
            handle = pieces[split][part]
            handle.write(", " + text if counts[split][part] else text)
            counts[split][part] += 1

        for s in summaries:
            own_issues.extend(s.issues)
            if s.image is None:
                continue
            if last is not None and last.image_id == s.image_id:
                id_issues.append(
                    Issue(
                        "error",
                        f"image id {s.image_id}",
                        f"image id {s.image_id}: duplicate image id "
                        f"({last.image['file_name']} and {s.image['file_name']})",
                        s.split,
                    )
                )
            last = s
            name = s.image["file_name"]
            if name in first_id and first_id[name] != s.image_id:
                detail = f"image id {s.image_id}, also image id {first_id[name]}"
                file_issues.append(Issue("duplicate_file_name", name, detail, s.split))
            first_id.setdefault(name, s.image_id)

            stats = per_split[s.split]
            put(s.split, 0, s.image)
            stats["images"] += 1
            classification = classification or bool(s.class_id)
            if not s.annotations and not s.class_id:
                stats["negatives"] += 1
            class_images = Counter(
                {names.get(s.class_id, str(s.class_id)): 0} if s.class_id else {}
            )
            for ann in s.annotations:
                put(s.split, 1, {"id": next_id, **ann})
                next_id += 1
                class_images[names.get(ann["category_id"], str(ann["category_id"]))] += 1
            stats["boxes"] += len(s.annotations)
            for class_name, boxes in class_images.items():
                entry = stats["classes"].setdefault(class_name, {"images": 0, "boxes": 0})
                entry["images"] += 1
                entry["boxes"] += boxes
        del first_id, last

        # Every text is checked before anything is written, so that a refused number
        # leaves no half-written output.
        heads = {}
        for split in splits:
            if split in refused:
                raise _nonfinite(paths[split])
            info_text = {"description": f"qatflow ground truth, split {split}"}
            heads[split] = _json_text(paths[split], {"info": info_text})[:-1] + ', "images": ['
        categories = _json_text(paths[splits[0]], label_map.coco_categories()) if splits else ""
        issues = list(extra_issues) + id_issues + file_issues + own_issues
        issues.sort(key=lambda i: (i.kind != "error", i.where, i.kind, i.detail))
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
                {"kind": i.kind, "where": i.where, "detail": i.detail, "split": i.split}
                for i in issues
            ],
            "imbalance": imbalance,
            "empty_classes": empty,
        }
        stats_path = fileio.join(output, STATS_FILE)
        stats_text = _json_text(stats_path, stats, indent=1) + "\n"
        for handles in pieces.values():
            for handle in handles:
                handle.close()
        fileio.makedirs(output)
        for i, split in enumerate(splits):
            parts = [os.path.join(tmp, f"{i}.{part}") for part in ("images", "annotations")]
            _join_file(
                paths[split],
                heads[split],
                parts[0],
                '], "annotations": [',
                parts[1],
                f'], "categories": {categories}}}',
            )
    label_map.save(fileio.join(output, LABEL_MAP_FILE))
    fileio.write_text(stats_path, stats_text)
    return stats


def _join_file(path: str, *pieces: str) -> None:
    """Write ``path`` from text pieces and, for the pieces that name a local file, that
    file's content (the odd places: text, file, text, file, text), in bounded memory."""
    if fileio.is_remote(path):
        # deferred: Apache Beam is heavy; only this path needs it
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        target = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
    else:
        target = open(path, "wb")  # noqa: SIM115 - closed below
    with target:
        for n, piece in enumerate(pieces):
            if n % 2 == 0:
                target.write(piece.encode("utf-8"))
                continue
            with open(piece, "rb") as fh:
                shutil.copyfileobj(fh, target, 1 << 20)
