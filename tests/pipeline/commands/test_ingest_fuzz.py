"""A bounded fuzz test of ``qatflow ingest``: Hypothesis mutates a tiny valid dataset.

A valid dataset of five tiny images (JPEG and PNG, two classes, 1-3 boxes each), in
COCO JSON or Pascal VOC XML form, gets one to three mutations: any annotation number
replaced by NaN, +-Infinity, 1e400, -1, 0, huge integers (one past Python's 4300-digit
limit), floats, strings, null, bools, lists or deep nesting; keys and entries deleted or
duplicated; file names made absolute, '..', missing, empty, a folder, a symlink out or
in a loop, non-UTF-8 (surrogateescape), NUL or too long; the annotation text truncated
or garbled; image bytes flipped, truncated or appended to, an image replaced by another
mode/format or by a PNG header claiming 30000x30000 pixels. ``pipeline.cli.main(["ingest",
...])`` then runs in-process (one DirectRunner worker), and:

- the exit code is 0 or 1; stderr never holds a traceback nor the last-line-of-defence
  hint "(run with -v for the traceback)" (an unexpected exception: a crash); exit 1
  prints exactly one ``qatflow: error: ...`` line, the last one, and leaves nothing in
  the output folder but failed-stats.json;
- on exit 0, the JSON files parse without NaN/Infinity or lone surrogates, every float
  feature of every record is finite, every box lies in [0, 1] with xmin < xmax and
  ymin < ymax, every image decodes with ``tf.io.decode_image`` to the record's size, and
  stats.json, the ground truth (images, boxes in pixels) and the records agree;
- on exit 0, every input image and box is accounted for: an image is written once, or
  skipped by exactly one counted issue naming it (missing_image, unreadable_image,
  outside_input, negative_dropped, invalid_record; invalid_file_name when it skips); a
  box is written (as an input box of its class, clipped, normalised), or dropped by a
  box_dropped/box_nonfinite issue naming its image, or belongs to an image skipped
  before its boxes were read. So input images == written + skipped, and input boxes ==
  written + dropped + boxes of skipped images;
- on exit 0, a written image holds the bytes of its file unchanged, or a counted repair
  issue names it; an image file outside the input folder is never written; a COCO
  ``iscrowd`` other than 0/1 is never taken silently (an issue names the annotation).

Deterministic (``derandomize``, no example database) and bounded: a run takes 0.1-0.5 s,
the module ~50 s on 2 busy cores (TensorFlow's import included). No shrinking by default
(it could take minutes). While exploring, environment variables set
``QATFLOW_FUZZ_EXAMPLES=N`` (generated examples per format), ``QATFLOW_FUZZ_SHRINK=1``
(shrink a failure to a minimal example), ``QATFLOW_FUZZ_EXCLUDE=class,class`` (leave
mutation classes out, explicit examples included, e.g.
``image_bomb,file_name:non_utf8,value:iscrowd``; see ``op_class``) and
``QATFLOW_FUZZ_KEEP=1`` (keep the datasets in the pytest temp folder).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import math
import numbers
import os
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections import Counter
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import numpy as np
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from model_maker.core.data.example_proto import example_class
from model_maker.core.data.records import decode_example
from model_maker.core.data.source import ISSUE_KINDS
from pipeline.cli import main

# --- knobs ------------------------------------------------------------------------------

# Generated examples per format (on top of the explicit ones), sized for the time budget.
EXAMPLES = {"coco": 50, "voc": 25}
if os.environ.get("QATFLOW_FUZZ_EXAMPLES"):
    EXAMPLES = dict.fromkeys(EXAMPLES, int(os.environ["QATFLOW_FUZZ_EXAMPLES"]))
SHRINK = os.environ.get("QATFLOW_FUZZ_SHRINK", "") == "1"
KEEP = os.environ.get("QATFLOW_FUZZ_KEEP", "") == "1"
EXCLUDE = tuple(e for e in os.environ.get("QATFLOW_FUZZ_EXCLUDE", "").split(",") if e)


def fuzz_settings(fmt: str) -> settings:
    return settings(
        max_examples=EXAMPLES[fmt],
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        phases=(Phase.explicit, Phase.generate, *((Phase.shrink,) if SHRINK else ())),
        suppress_health_check=list(HealthCheck),
    )


# --- the valid dataset --------------------------------------------------------------------

# file name, (width, height), boxes as (class, xmin, ymin, xmax, ymax) in pixels
BASE = (
    ("img_00.jpg", (24, 16), (("cat", 2, 2, 10, 8),)),
    ("img_01.png", (20, 20), (("dog", 1, 1, 9, 19), ("cat", 10, 3, 18, 12))),
    ("img_02.jpg", (16, 24), (("cat", 0, 0, 16, 24), ("dog", 3, 4, 7, 9), ("dog", 8, 8, 15, 20))),
    ("img_03.png", (18, 14), (("dog", 4, 2, 12, 13),)),
    ("img_04.jpg", (22, 18), (("cat", 5, 5, 20, 17), ("dog", 1, 2, 4, 6))),
)
CLASSES = ("cat", "dog")
OUTSIDE_NAME = "out.png"
NON_UTF8 = os.fsdecode(b"img_\xff\xfe")  # lone surrogates: bytes that are not UTF-8


def _pixels(index: int) -> Image.Image:
    width, height = BASE[index][1]
    rng = np.random.default_rng(index)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8), "RGB")


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _image_bytes(index: int) -> bytes:
    name = BASE[index][0]
    return _encode(_pixels(index), "JPEG" if name.endswith(".jpg") else "PNG")


IMAGE_BYTES = tuple(_image_bytes(i) for i in range(len(BASE)))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming ``width`` x ``height`` RGB pixels, 100 of them given."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def converted_image(index: int, mode: str) -> bytes:
    """Image ``index`` in another mode or format (every one of them needs a repair)."""
    rgb = _pixels(index)
    if mode == "L":
        return _encode(rgb.convert("L"), "PNG")
    if mode == "RGBA":
        return _encode(rgb.convert("RGBA"), "PNG")
    if mode == "P":
        return _encode(rgb.convert("P"), "PNG")
    if mode == "CMYK":
        return _encode(rgb.convert("CMYK"), "JPEG")
    if mode == "I16":
        deep = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
        return _encode(Image.fromarray(deep), "PNG")
    if mode == "gif":
        return _encode(rgb, "GIF")
    if mode == "animated_gif":
        return _encode(rgb, "GIF", save_all=True, append_images=[rgb.convert("L").convert("RGB")])
    if mode == "bmp":
        return _encode(rgb, "BMP")
    if mode == "exif6":
        exif = Image.Exif()
        exif[0x0112] = 6
        return _encode(rgb, "JPEG", exif=exif)
    if mode == "exif9":  # an orientation outside 1..8
        exif = Image.Exif()
        exif[0x0112] = 9
        return _encode(rgb, "JPEG", exif=exif)
    raise ValueError(mode)


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (``1e400``, a 5000-digit integer, deep nesting)."""

    text: str
    name: str = field(default="", compare=False)  # repr of a long one: its constant's name

    def __repr__(self) -> str:
        return self.name or f"Raw({self.text!r})"


HUGE_INT = Raw("1" + "0" * 5000, "HUGE_INT")  # beyond Python's 4300-digit int conversion limit
DEEP = Raw("[" * 50_000 + "]" * 50_000, "DEEP")  # nesting beyond the recursion limit


def _dumps(data: object) -> str:
    raws: list[Raw] = []

    def default(value):
        if isinstance(value, Raw):
            raws.append(value)
            return f"\x00raw{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(data, default=default)  # ensure_ascii: surrogates become \udcff
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), raw.text)
    return text


def base_coco() -> dict:
    categories = [{"id": i, "name": name} for i, name in enumerate(CLASSES, start=1)]
    images, annotations = [], []
    for i, (name, (width, height), boxes) in enumerate(BASE):
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for label, x0, y0, x1, y1 in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": CLASSES.index(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": categories}


def base_voc() -> list[dict]:
    out = []
    for name, (width, height), boxes in BASE:
        objects = [
            {
                "name": label,
                "pose": "Unspecified",
                "truncated": "0",
                "difficult": "0",
                "bndbox": {"xmin": str(x0), "ymin": str(y0), "xmax": str(x1), "ymax": str(y1)},
            }
            for label, x0, y0, x1, y1 in boxes
        ]
        size = {"width": str(width), "height": str(height), "depth": "3"}
        out.append({"folder": "images", "filename": name, "size": size, "object": objects})
    return out


def voc_xml(entry: dict) -> bytes:
    def element(tag: str, value, indent: str) -> list[str]:
        if isinstance(value, dict):
            inner = [line for k, v in value.items() for line in element(k, v, indent + "  ")]
            return [f"{indent}<{tag}>", *inner, f"{indent}</{tag}>"]
        if isinstance(value, list):
            return [line for v in value for line in element(tag, v, indent)]
        return [f"{indent}<{tag}>{escape(str(value))}</{tag}>"]

    lines = ["<annotation>"]
    for key, value in entry.items():
        lines += element(key, value, "  ")
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


# --- mutations ------------------------------------------------------------------------------

NUMBERS = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        Raw("1e400"),
        Raw("-1e400"),
        Raw("NaN"),
        -1,
        0,
        1,
        2,
        10**30,
        2**63,
        -(2**64),
        HUGE_INT,
        DEEP,
        1e308,
        -1e-300,
        0.5,
        3.75,
        1e-9,
        "5",
        "",
        "nan",
        None,
        True,
        False,
        [],
        {},
    ]
)
ANY_NUMBER = st.one_of(
    NUMBERS,
    NUMBERS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)
VOC_TOKENS = st.one_of(
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "1e400",
            "-1e400",
            "-1",
            "0",
            "1" + "0" * 30,
            "1" + "0" * 5000,
            "1e308",
            "0.5",
            "3.75",
            "1e-9",
            "",
            "abc",
            " 7 ",
            "1_0",
            "\u0663",  # ARABIC-INDIC DIGIT THREE: float() reads it
            "0x10",
            "true",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
FILE_NAME_KINDS = (
    "missing",
    "empty",
    "dir",
    "dotdot",
    "dotdot_inside",
    "abs_outside",
    "abs_inside",
    "symlink_out",
    "other",
    "non_utf8",
    "unicode",
    "space",
    "long",
    "symlink_loop",
    "nul",
)
VOC_FILE_NAME_KINDS = tuple(k for k in FILE_NAME_KINDS if k != "nul")  # XML cannot hold NUL
SNIPPETS = st.sampled_from(
    [
        b"{",
        b"]",
        b",",
        b'"',
        b"\x00",
        b"\xff\xfe",
        b"<",
        b"</x>",
        b"&bogus;",
        b"\xef\xbb\xbf",
        b"\n",
    ]
)
IMAGE_INDEX = st.integers(0, len(BASE) - 1)
PERMILLE = st.integers(0, 999)
BYTE = st.integers(1, 255)
CONVERSIONS = ("L", "RGBA", "P", "CMYK", "I16", "gif", "animated_gif", "bmp", "exif6", "exif9")

IMAGE_OPS = (
    st.tuples(st.just("image_flip"), IMAGE_INDEX, PERMILLE, BYTE),
    st.tuples(st.just("image_truncate"), IMAGE_INDEX, PERMILLE),
    st.tuples(
        st.just("image_append"),
        IMAGE_INDEX,
        st.one_of(st.binary(min_size=1, max_size=32), st.just(IMAGE_BYTES[1])),
    ),
    st.tuples(st.just("image_bomb"), IMAGE_INDEX, st.just(30000), st.just(30000)),
    st.tuples(st.just("image_convert"), IMAGE_INDEX, st.sampled_from(CONVERSIONS)),
)
COCO_KEYS = {
    "images": ("id", "width", "height", "file_name"),
    "annotations": (
        "id",
        "image_id",
        "category_id",
        "area",
        "iscrowd",
        "bbox",
        "bbox[0]",
        "bbox[1]",
        "bbox[2]",
        "bbox[3]",
    ),
    "categories": ("id", "name"),
    "top": ("images", "annotations", "categories"),
}
COCO_SECTIONS = st.sampled_from(("images", "annotations", "annotations", "categories", "top"))


@st.composite
def _coco_value(draw):
    section = draw(COCO_SECTIONS)
    key = draw(st.sampled_from(COCO_KEYS[section]))
    return ("value", section, draw(st.integers(0, 8)), key, draw(ANY_NUMBER))


@st.composite
def _coco_delete(draw):
    section = draw(COCO_SECTIONS)
    key = draw(st.sampled_from(COCO_KEYS[section]))
    return ("delete", section, draw(st.integers(0, 8)), key)


COCO_OPS = (
    _coco_value(),
    _coco_value(),
    _coco_value(),
    _coco_delete(),
    st.tuples(
        st.just("duplicate"),
        st.sampled_from(("images", "annotations", "categories")),
        st.integers(0, 8),
    ),
    st.tuples(
        st.just("drop"), st.sampled_from(("images", "annotations", "categories")), st.integers(0, 8)
    ),
    st.tuples(st.just("file_name"), IMAGE_INDEX, st.sampled_from(FILE_NAME_KINDS)),
    st.tuples(st.just("file_name"), IMAGE_INDEX, st.sampled_from(FILE_NAME_KINDS)),
    st.tuples(st.just("text_truncate"), PERMILLE),
    st.tuples(st.just("text_flip"), PERMILLE, BYTE),
    st.tuples(st.just("text_insert"), PERMILLE, SNIPPETS),
    *IMAGE_OPS,
    *IMAGE_OPS,
)
VOC_VALUE_FIELDS = ("width", "height", "depth", "name", "xmin", "ymin", "xmax", "ymax", "difficult")
VOC_DELETE_FIELDS = (
    "filename",
    "size",
    "width",
    "height",
    "object",
    "name",
    "bndbox",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
)
VOC_VALUE = st.tuples(
    st.just("value"), IMAGE_INDEX, st.integers(0, 2), st.sampled_from(VOC_VALUE_FIELDS), VOC_TOKENS
)
VOC_OPS = (
    VOC_VALUE,
    VOC_VALUE,
    VOC_VALUE,
    st.tuples(
        st.just("delete"), IMAGE_INDEX, st.integers(0, 2), st.sampled_from(VOC_DELETE_FIELDS)
    ),
    st.tuples(st.just("duplicate"), IMAGE_INDEX, st.integers(0, 2)),
    st.tuples(st.just("file_name"), IMAGE_INDEX, st.sampled_from(VOC_FILE_NAME_KINDS)),
    st.tuples(st.just("file_name"), IMAGE_INDEX, st.sampled_from(VOC_FILE_NAME_KINDS)),
    st.tuples(st.just("text_truncate"), IMAGE_INDEX, PERMILLE),
    st.tuples(st.just("text_flip"), IMAGE_INDEX, PERMILLE, BYTE),
    st.tuples(st.just("text_insert"), IMAGE_INDEX, PERMILLE, SNIPPETS),
    *IMAGE_OPS,
    *IMAGE_OPS,
)


def op_class(fmt: str, op: tuple) -> str:
    """The mutation class of ``op`` (what ``QATFLOW_FUZZ_EXCLUDE`` names), e.g.
    ``file_name:non_utf8``, ``value:iscrowd``, ``value:nan`` (a NaN anywhere), ``image_bomb``."""
    kind = op[0]
    if kind == "file_name":
        return f"file_name:{op[2]}"
    if kind == "value" and fmt == "coco":
        value = op[4]
        if isinstance(value, float) and math.isnan(value):
            return f"value:nan:{op[3]}"
        return f"value:{op[3]}"
    if kind == "value":
        return f"value:{op[3]}"
    return kind


def _excluded(fmt: str, op: tuple) -> bool:
    cls = op_class(fmt, op)
    return any(cls == e or cls.startswith(e + ":") for e in EXCLUDE)


def mutations(fmt: str):
    ops = st.one_of(COCO_OPS if fmt == "coco" else VOC_OPS)
    if EXCLUDE:
        ops = ops.filter(lambda op: not _excluded(fmt, op))
    return st.lists(ops, min_size=1, max_size=3)


def _at(permille: int, length: int) -> int:
    return permille * length // 1000


def garble(text: bytes, op: tuple) -> bytes:
    kind, args = op[0], op[-2:] if op[0] != "text_truncate" else op[-1:]
    if not text:
        return text
    if kind == "text_truncate":
        return text[: _at(args[0], len(text))]
    if kind == "text_flip":
        pos = _at(args[0], len(text))
        return text[:pos] + bytes([text[pos] ^ args[1]]) + text[pos + 1 :]
    pos = _at(args[0], len(text))
    return text[:pos] + args[1] + text[pos:]


def mutate_image(path: str, op: tuple) -> None:
    kind, index = op[0], op[1]
    with open(path, "rb") as fh:
        data = fh.read()
    if kind == "image_flip" and data:
        pos = _at(op[2], len(data))
        data = data[:pos] + bytes([data[pos] ^ op[3]]) + data[pos + 1 :]
    elif kind == "image_truncate":
        data = data[: _at(op[2], len(data))]
    elif kind == "image_append":
        data = data + op[2]
    elif kind == "image_bomb":
        data = bomb_png(op[2], op[3])
    elif kind == "image_convert":
        data = converted_image(index, op[2])
    with open(path, "wb") as fh:
        fh.write(data)


# --- building a mutated dataset ------------------------------------------------------------


@dataclass
class Case:
    fmt: str
    root: str
    input: str  # --input
    image_dir: str  # where file names are relative to
    annotations: str = ""  # COCO JSON
    output: str = ""


def _layout(root: str, image_dir: str) -> str:
    os.makedirs(image_dir)
    for (name, _, _), data in zip(BASE, IMAGE_BYTES, strict=True):
        with open(os.path.join(image_dir, name), "wb") as fh:
            fh.write(data)
    outside = os.path.join(root, "outside")
    os.makedirs(outside)
    with open(os.path.join(outside, OUTSIDE_NAME), "wb") as fh:
        fh.write(IMAGE_BYTES[3])
    os.symlink(os.path.join(outside, OUTSIDE_NAME), os.path.join(image_dir, "link.png"))
    os.symlink("loop.png", os.path.join(image_dir, "loop.png"))
    os.makedirs(os.path.join(image_dir, "sub"))
    return outside


def _file_name(case: Case, index: int, kind: str) -> str:
    """The file name of mutation ``kind`` for image ``index``; creates the file it needs."""
    name = BASE[index][0]
    ext = os.path.splitext(name)[1]
    outside = os.path.join(case.root, "outside", OUTSIDE_NAME)
    up = os.path.relpath(outside, case.image_dir)
    fresh = {"non_utf8": NON_UTF8 + ext, "unicode": f"\u00fcml\u00e4ut_{index}{ext}"}
    if kind in fresh:
        with open(os.path.join(case.image_dir, fresh[kind]), "wb") as fh:
            fh.write(IMAGE_BYTES[index])
        return fresh[kind]
    return {
        "missing": f"nope_{index}{ext}",
        "empty": "",
        "dir": "sub",
        "dotdot": up,
        "dotdot_inside": f"sub/../{BASE[1][0]}",
        "abs_outside": outside,
        "abs_inside": os.path.join(case.image_dir, BASE[1][0]),
        "symlink_out": "link.png",
        "other": BASE[1][0],
        "space": f" {name} ",
        "long": "x" * 300 + ext,
        "symlink_loop": "loop.png",
        "nul": f"{name}\x00",
    }[kind]


def _coco_apply(case: Case, data: dict, op: tuple) -> None:
    kind = op[0]
    if kind == "file_name":
        images = data.get("images")
        if isinstance(images, list) and images and isinstance(images[op[1] % len(images)], dict):
            images[op[1] % len(images)]["file_name"] = _file_name(case, op[1], op[2])
        return
    section, index = op[1], op[2]
    if section == "top":
        if kind == "value":
            data[op[3]] = op[4]
        elif kind == "delete":
            data.pop(op[3], None)
        return
    items = data.get(section)
    if not isinstance(items, list) or not items:
        return
    index %= len(items)
    if kind == "duplicate":
        items.insert(index, copy.deepcopy(items[index]))
        return
    if kind == "drop":
        del items[index]
        return
    item = items[index]
    if not isinstance(item, dict):
        return
    key = op[3]
    match = re.fullmatch(r"bbox\[(\d)\]", key)
    if match:
        bbox = item.get("bbox")
        if isinstance(bbox, list) and len(bbox) > int(match.group(1)):
            if kind == "value":
                bbox[int(match.group(1))] = op[4]
            else:
                del bbox[int(match.group(1))]
        return
    if kind == "value":
        item[key] = op[4]
    else:
        item.pop(key, None)


def build_coco(root: str, ops: list[tuple]) -> Case:
    image_dir = os.path.join(root, "images")
    case = Case("coco", root, image_dir, image_dir, os.path.join(root, "instances.json"))
    _layout(root, image_dir)
    data = base_coco()
    for op in ops:
        if not op[0].startswith(("text_", "image_")):
            _coco_apply(case, data, op)
    text = _dumps(data).encode("utf-8")
    for op in ops:
        if op[0].startswith("text_"):
            text = garble(text, op)
    with open(case.annotations, "wb") as fh:
        fh.write(text)
    for op in ops:
        if op[0].startswith("image_"):
            mutate_image(os.path.join(image_dir, BASE[op[1]][0]), op)
    return case


def _voc_apply(case: Case, entries: list[dict], xml_names: list[str], op: tuple) -> None:
    kind, entry = op[0], entries[op[1]]
    objects = entry.get("object", [])
    obj = objects[op[2] % len(objects)] if objects and isinstance(op[2], int) else None
    if kind == "file_name":
        if op[2] == "non_utf8":
            xml_names[op[1]] = f"img_{op[1]:02d}{NON_UTF8}.xml"
        else:
            entry["filename"] = _file_name(case, op[1], op[2])
    elif kind == "duplicate":
        if obj is not None:
            objects.insert(op[2] % len(objects), copy.deepcopy(obj))
    elif kind == "value":
        field_, token = op[3], op[4]
        if field_ in ("width", "height", "depth"):
            if "size" in entry:
                entry["size"][field_] = token
        elif obj is not None:
            target = obj.get("bndbox") if field_ in ("xmin", "ymin", "xmax", "ymax") else obj
            if isinstance(target, dict):
                target[field_] = token
    elif kind == "delete":
        field_ = op[3]
        if field_ in ("filename", "size"):
            entry.pop(field_, None)
        elif field_ in ("width", "height"):
            entry.get("size", {}).pop(field_, None)
        elif field_ == "object":
            if obj is not None:
                objects.remove(obj)
        elif obj is not None:
            target = obj.get("bndbox", {}) if field_ in ("xmin", "ymin", "xmax", "ymax") else obj
            target.pop(field_, None)


def build_voc(root: str, ops: list[tuple]) -> Case:
    dataset = os.path.join(root, "voc")
    image_dir = os.path.join(dataset, "images")
    case = Case("voc", root, dataset, image_dir)
    _layout(root, image_dir)
    ann_dir = os.path.join(dataset, "annotations")
    os.makedirs(ann_dir)
    entries = base_voc()
    xml_names = [f"img_{i:02d}.xml" for i in range(len(BASE))]
    for op in ops:
        if not op[0].startswith(("text_", "image_")):
            _voc_apply(case, entries, xml_names, op)
    texts = [voc_xml(e) for e in entries]
    for op in ops:
        if op[0].startswith("text_"):
            texts[op[1]] = garble(texts[op[1]], op)
    for name, text in zip(xml_names, texts, strict=True):
        with open(os.path.join(ann_dir, name), "wb") as fh:
            fh.write(text)
    for op in ops:
        if op[0].startswith("image_"):
            mutate_image(os.path.join(image_dir, BASE[op[1]][0]), op)
    return case


# --- what the input holds, read back from the files as written -----------------------------


@dataclass
class InputImage:
    """One image of the (mutated) input, as the readers see it."""

    key: str  # records' image/source_id
    tokens: tuple[str, ...]  # texts of which one is in every issue's ``where`` naming it
    corners: list[tuple]  # (class name, xmin, ymin, xmax, ymax) in pixels, as the reader reads
    path: str  # the image file its file name resolves to
    crowd_refs: tuple[str, ...] = ()  # refs of annotations with an iscrowd other than 0/1
    issues: list[dict] = field(default_factory=list)

    @property
    def boxes(self) -> int:
        return len(self.corners)


class InputError(AssertionError):
    """The input cannot be read as the format says, yet ingest exited 0."""


def _valid_crowd(value) -> bool:
    return isinstance(value, numbers.Real) and value in (0, 1)


def _float(value) -> float:
    """``float(value)``, an integer beyond the float range as an infinity (as coco.py)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        return math.nan


def coco_inputs(case: Case) -> list[InputImage]:
    with open(case.annotations, encoding="utf-8") as fh:
        data = json.loads(fh.read())
    try:
        by_id = {img["id"]: img for img in data["images"]}
        names = {cat["id"]: str(cat["name"]) for cat in data["categories"]}
    except (TypeError, KeyError) as exc:
        raise InputError(f"COCO images or categories unreadable ({exc!r})") from None
    corners: dict = {image_id: [] for image_id in by_id}
    crowd: dict = {}
    for i, ann in enumerate(data["annotations"]):
        image_id = by_id[ann["image_id"]]["id"]
        x, y, w, h = (_float(v) for v in ann["bbox"])
        corners[image_id].append((names[ann["category_id"]], x, y, x + w, y + h))
        if "iscrowd" in ann and not _valid_crowd(ann["iscrowd"]):
            ref = f"annotation id {ann['id']}" if "id" in ann else f"annotations[{i}]"
            crowd.setdefault(image_id, []).append(ref)
    out = []
    for image_id, image in by_id.items():
        out.append(
            InputImage(
                key=str(image_id),
                tokens=tuple(f"image id {image_id}{end}" for end in (" (", ":", ")")),
                corners=corners[image_id],
                path=os.path.join(case.image_dir, str(image["file_name"])),
                crowd_refs=tuple(crowd.get(image_id, ())),
            )
        )
    return out


def _renderings(text: str) -> tuple[str, ...]:
    raw = os.fsencode(text)
    return tuple(
        {
            text,
            raw.decode("utf-8", "backslashreplace"),
            raw.decode("utf-8", "replace"),
            repr(text)[1:-1],
            ascii(text)[1:-1],
        }
    )


def voc_inputs(case: Case) -> list[InputImage]:
    ann_dir = os.path.join(case.input, "annotations")
    names = sorted(n for n in os.listdir(ann_dir) if n.lower().endswith(".xml"))
    out = []
    for position, name in enumerate(names, start=1):
        path = os.path.join(ann_dir, name)
        with open(path, "rb") as fh:
            try:
                root = ET.fromstring(fh.read())
            except ET.ParseError as exc:
                raise InputError(f"{name}: malformed XML ({exc})") from None
        file_name = (root.findtext("filename") or "").strip()
        corners = []
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            coords = [_float(box.findtext(t) if box is not None else None) for t in CORNERS]
            corners.append(((obj.findtext("name") or "").strip(), *coords))
        out.append(
            InputImage(
                key=str(position),
                tokens=tuple(r + " " for r in _renderings(path)) + _renderings(path + ":"),
                corners=corners,
                path=os.path.join(case.image_dir, file_name),
            )
        )
    return out


CORNERS = ("xmin", "ymin", "xmax", "ymax")


# --- reading the output --------------------------------------------------------------------


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def strict_json(path: str):
    """The JSON at ``path``; no NaN/Infinity, no lone surrogate (``\\udcff``: not Unicode)."""

    def refuse(token):
        raise AssertionError(f"{path}: non-finite JSON constant {token}")

    with open(path, encoding="utf-8") as fh:
        data = json.loads(fh.read(), parse_constant=refuse)
    for text in _strings(data):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise AssertionError(f"{path}: string {text!r} is not Unicode") from None
    return data


def tfrecords(path: str) -> list[bytes]:
    """The records of a gzip TFRecord file (length-framed; CRCs not checked)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        pos += 12
        out.append(data[pos : pos + length])
        pos += length + 4
    assert pos == len(data), f"{path}: truncated TFRecord framing"
    return out


# Issues that skip an image (or a record).
SKIP_KINDS = frozenset(
    {"missing_image", "unreadable_image", "outside_input", "negative_dropped", "invalid_record"}
)
# A file name that is not UTF-8: the image is skipped, or written under a printable name
# (``\\xNN`` for the bytes); either way counted, naming the image.
NAME_KINDS = frozenset({"invalid_file_name"})
BOX_DROP_KINDS = frozenset({"box_dropped", "box_nonfinite"})
# Issues that say the written pixels are not the file's bytes.
REPAIR_KINDS = (
    frozenset(ISSUE_KINDS)
    - SKIP_KINDS
    - NAME_KINDS
    - BOX_DROP_KINDS
    - {
        "box_clipped",
        "size_mismatch",
        "duplicate_file_name",
        "invalid_row",
        "error",
    }
)


def _inside(path: str, folder: str) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base + os.sep)


def decoded_size(encoded: bytes) -> tuple[int, int] | str:
    """(height, width) of ``encoded`` as the trainers decode it (``tf.io.decode_image``,
    records.py's contract), or the decoder's error."""
    import tensorflow as tf  # deferred: seconds to import; only runs that exit 0 need it

    try:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except tf.errors.OpError as exc:
        return f"{type(exc).__name__}: {exc.message.split('}}')[-1].strip()}"
    return (int(image.shape[0]), int(image.shape[1]))


def _normalised(bbox: list, image: dict) -> tuple[float, float, float, float]:
    x, y, w, h = bbox
    width, height = image["width"], image["height"]
    return (y / height, x / width, (y + h) / height, (x + w) / width)


def _clipped(corners: list[tuple], width: int, height: int) -> list[tuple]:
    """The (class, ymin, xmin, ymax, xmax) a record may hold for ``corners``: finite
    boxes with an area, clipped to the image, normalised."""
    out = []
    for label, x0, y0, x1, y1 in corners:
        if not all(map(math.isfinite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
            continue
        x0, x1 = (min(max(v, 0.0), width) for v in (x0, x1))
        y0, y1 = (min(max(v, 0.0), height) for v in (y0, y1))
        if x1 > x0 and y1 > y0:
            out.append((label, y0 / height, x0 / width, y1 / height, x1 / width))
    return out


def _unmatched(got: list[tuple], want: list[tuple], tol: float) -> list[tuple]:
    """The items of ``got`` left once each is paired with an equal item of ``want``
    (same first field, numbers within ``tol``)."""
    left, unmatched = list(want), []
    for item in got:
        for i, other in enumerate(left):
            if item[0] == other[0] and all(
                abs(a - b) <= tol for a, b in zip(item[1:], other[1:], strict=True)
            ):
                del left[i]
                break
        else:
            unmatched.append(item)
    return unmatched


def check_success(case: Case, splits: tuple[str, ...], strict: bool) -> None:
    out = case.output
    names = sorted(n for n in os.listdir(out) if n.endswith(".json"))
    expected = {"stats.json", "label_map.json", *(f"{s}_annotations.json" for s in splits)}
    assert expected <= set(names), f"outputs missing: {sorted(expected - set(names))}"
    written = {n: strict_json(os.path.join(out, n)) for n in names}
    stats = written["stats.json"]
    issues = stats["issues"]
    unknown = {i["kind"] for i in issues} - set(ISSUE_KINDS)
    assert not unknown, f"issue kinds not in ISSUE_KINDS: {unknown}"
    assert stats["issue_counts"] == dict(Counter(i["kind"] for i in issues)), "issue_counts"
    assert not [i for i in issues if i["kind"] == "error"], "exit 0 with an error issue"
    if strict:
        assert {i["kind"] for i in issues} <= {"negative_dropped"}, "--strict exit 0 with issues"

    # Records: finite floats, normalised ordered boxes, counts equal to stats and ground truth.
    records: dict[str, list] = {}
    for split in splits:
        folder = os.path.join(out, f"Split-{split}")
        split_records = []
        for name in sorted(os.listdir(folder)):
            for raw in tfrecords(os.path.join(folder, name)):
                proto = example_class().FromString(raw)
                for key, feature in proto.features.feature.items():
                    for value in feature.float_list.value:
                        assert math.isfinite(value), f"record feature {key} holds {value}"
                    if key in ("image/filename", "image/object/class/text", "image/source_id"):
                        for value in feature.bytes_list.value:
                            value.decode("utf-8")  # raises on bytes that are not UTF-8
                split_records.append(decode_example(raw))
        gt = written[f"{split}_annotations.json"]
        boxes = sum(len(r.boxes) for r in split_records)
        entry = stats["splits"][split]
        assert entry["images"] == len(split_records) == len(gt["images"]), f"{split}: images"
        assert entry["boxes"] == boxes == len(gt["annotations"]), f"{split}: boxes"
        gt_images = {str(image["id"]): image for image in gt["images"]}
        gt_annotations: dict[str, list] = {}
        for ann in gt["annotations"]:
            gt_annotations.setdefault(str(ann["image_id"]), []).append(ann)
        for record in split_records:
            for ymin, xmin, ymax, xmax in record.boxes:
                assert 0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0, (
                    f"record {record.source_id} ({record.filename!r}): box "
                    f"(ymin, xmin, ymax, xmax) = ({ymin}, {xmin}, {ymax}, {xmax})"
                )
            assert all(a > 0 for a in record.areas), f"record {record.source_id}: areas"
            assert decoded_size(record.encoded) == (record.height, record.width), (
                f"record {record.source_id} ({record.filename!r}): TensorFlow decodes its "
                f"image/encoded ({record.format}) to {decoded_size(record.encoded)}, the record "
                f"says {record.height}x{record.width}"
            )
            names = {c["id"]: c["name"] for c in written["label_map.json"]["classes"]}
            assert all(
                names.get(lb) == t for lb, t in zip(record.labels, record.texts, strict=True)
            ), (
                f"record {record.source_id}: labels {record.labels} texts {record.texts} "
                f"against label_map.json {names}"
            )
            records.setdefault(record.source_id, []).append(record)
            # The ground truth holds the same image and boxes (in pixels) as the record.
            image = gt_images.get(record.source_id)
            assert image and (image["width"], image["height"]) == (record.width, record.height), (
                f"record {record.source_id}: ground truth image {image}"
            )
            truth = [
                (names.get(a["category_id"]), *_normalised(a["bbox"], image))
                for a in gt_annotations.get(record.source_id, [])
            ]
            mine = [(t, *b) for t, b in zip(record.texts, record.boxes, strict=True)]
            assert len(truth) == len(mine) and not _unmatched(mine, truth, 1e-5), (
                f"record {record.source_id}: boxes {mine} but ground truth {truth}"
            )
    total = stats["total"]
    assert total["images"] == sum(len(v) for v in records.values()), "total images"
    assert total["boxes"] == sum(len(r.boxes) for v in records.values() for r in v), "total boxes"

    # Accounting: every input image and box, and the issues naming them.
    inputs = coco_inputs(case) if case.fmt == "coco" else voc_inputs(case)
    by_key = {image.key: image for image in inputs}
    assert len(by_key) == len(inputs), "two input images share a source_id"
    assert set(records) <= set(by_key), f"records of no input image: {set(records) - set(by_key)}"
    counted = SKIP_KINDS | NAME_KINDS | BOX_DROP_KINDS
    for issue in issues:
        named = [image for image in inputs if any(t in issue["where"] for t in image.tokens)]
        if issue["kind"] in counted:
            assert len(named) == 1, f"a counted {issue['kind']} names {len(named)} images: {issue}"
        for image in named:
            image.issues.append(issue)
    skipped_images = read_skipped_boxes = 0
    for image in inputs:
        kinds = Counter(i["kind"] for i in image.issues)
        skips = [k for k in kinds.elements() if k in SKIP_KINDS]
        drops = sum(kinds[k] for k in BOX_DROP_KINDS)
        written_as = records.get(image.key, [])
        name = f"image {image.key} ({image.path!r})"
        assert len(written_as) <= 1, f"{name} written {len(written_as)} times"
        if written_as:
            record = written_as[0]
            assert not skips, f"{name} written and skipped ({skips})"
            assert len(record.boxes) + drops == image.boxes, (
                f"{name}: {image.boxes} input boxes, {len(record.boxes)} written, {drops} dropped"
            )
            # Each written box is an input box of its class, clipped to the image, normalised.
            mine = [(t, *b) for t, b in zip(record.texts, record.boxes, strict=True)]
            want = _clipped(image.corners, record.width, record.height)
            assert not _unmatched(mine, want, 1e-6), (
                f"{name}: written boxes {_unmatched(mine, want, 1e-6)} are no input box "
                f"{image.corners} clipped to {record.width}x{record.height}"
            )
            data = b""
            if os.path.isfile(image.path):
                with open(image.path, "rb") as fh:
                    data = fh.read()
            repairs = sorted(k for k in kinds if k in REPAIR_KINDS)
            assert record.encoded == data or repairs, (
                f"{name} written with other bytes than its file's and no repair issue naming it"
            )
            assert _inside(image.path, case.input), (
                f"{name}: a file outside the input folder {case.input} was read and written"
            )
            for ref in image.crowd_refs:
                assert any(ref in i["where"] or ref in i["detail"] for i in image.issues), (
                    f"{name}: {ref} has an iscrowd other than 0/1, taken silently"
                )
            continue
        if not skips:
            skips = [k for k in kinds.elements() if k in NAME_KINDS]
        assert len(skips) == 1, f"{name} not written; skip issues naming it: {skips}"
        skipped_images += 1
        if skips[0] == "negative_dropped":
            assert drops == image.boxes, f"{name}: negative_dropped with boxes left"
        else:
            assert drops == 0, f"{name}: skipped ({skips[0]}) and its boxes dropped too"
            read_skipped_boxes += image.boxes
    counts = Counter(i["kind"] for i in issues)
    dropped = sum(counts[k] for k in BOX_DROP_KINDS)
    # Every skip issue names one image, and each skipped image has exactly one.
    assert sum(counts[k] for k in SKIP_KINDS) <= skipped_images
    assert len(inputs) == total["images"] + skipped_images, "input images != written + skipped"
    assert sum(i.boxes for i in inputs) == total["boxes"] + dropped + read_skipped_boxes, (
        "input boxes != written + dropped + boxes of skipped images"
    )


def _files(folder: str) -> list[str]:
    """The files below ``folder`` (relative paths); [] when it does not exist."""
    return [os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


SPLITS = ("all",)  # one split: the hash split still runs, and a run costs 20% less


def run_case(case: Case, drop_negatives: bool, strict: bool) -> None:
    case.output = os.path.join(case.root, "out")
    argv = ["-q", "ingest", "--format", case.fmt, "--input", case.input]
    if case.annotations:
        argv += ["--annotations", case.annotations]
    argv += ["--output", case.output, "--workers", "1", "--split", "all=1.0"]
    argv += ["--drop-negatives"] * drop_negatives + ["--strict"] * strict
    code, stdout, stderr = run_cli(argv)
    event(f"exit {code}")  # the share of runs that get past the readers (statistics)
    tail = "\n".join(stderr.strip().splitlines()[-3:])
    assert code in (0, 1), f"exit {code}: {tail}"
    assert "Traceback" not in stderr, f"traceback on stderr:\n{stderr[-3000:]}"
    assert "(run with -v for the traceback)" not in stderr, f"crash: {tail}"
    if code:
        lines = [line for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("qatflow: error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], f"exit 1 without one error line: {tail}"
        assert errors[0][len("qatflow: error: ") :].strip() not in ("", "(no message)")
        # A failed run leaves nothing in --output but its stats as failed-stats.json
        # (ingest stages its output in --output/.ingest-staging and publishes it on success).
        left = _files(case.output)
        assert set(left) <= {"failed-stats.json"}, f"exit 1 left {sorted(left)} in the output"
        if left:
            strict_json(os.path.join(case.output, "failed-stats.json"))
        return
    left = [f for f in _files(case.output) if f.startswith(".") or f == "failed-stats.json"]
    assert not left, f"exit 0 left {left} in the output"
    check_success(case, SPLITS, strict)


def fuzz(tmp_path_factory, fmt: str, ops: list[tuple], drop_negatives: bool, strict: bool):
    base = tmp_path_factory.getbasetemp() / f"fuzz-{fmt}"
    base.mkdir(exist_ok=True)
    if any(_excluded(fmt, op) for op in ops):
        return  # an explicit example of an excluded class (QATFLOW_FUZZ_EXCLUDE)
    root = tempfile.mkdtemp(dir=base)
    try:
        case = (build_coco if fmt == "coco" else build_voc)(root, ops)
        run_case(case, drop_negatives, strict)
    finally:
        if not KEEP:
            shutil.rmtree(root, ignore_errors=True)


# (--drop-negatives, --strict): mostly neither.
FLAGS = st.sampled_from([(False, False), (True, False), (False, False), (False, True)])
PLAIN = (False, False)
NAN = math.nan


# The explicit examples run every time, whatever the draw: one or more per mutation class.
@fuzz_settings("coco")
@given(ops=mutations("coco"), flags=FLAGS)
@example(ops=[("value", "annotations", 0, "bbox[2]", NAN)], flags=PLAIN)
@example(ops=[("value", "annotations", 1, "iscrowd", NAN)], flags=PLAIN)
@example(ops=[("value", "annotations", 2, "area", math.inf)], flags=PLAIN)
@example(ops=[("value", "annotations", 0, "bbox[2]", 1e-9)], flags=PLAIN)
@example(ops=[("value", "images", 2, "width", Raw("1e400"))], flags=PLAIN)
@example(ops=[("value", "annotations", 3, "bbox[0]", HUGE_INT)], flags=PLAIN)
@example(ops=[("value", "annotations", 3, "bbox[1]", DEEP)], flags=PLAIN)
@example(ops=[("value", "annotations", 4, "image_id", [])], flags=PLAIN)
@example(
    ops=[("delete", "annotations", 0, "iscrowd"), ("duplicate", "annotations", 1)],
    flags=(True, False),
)
@example(ops=[("file_name", 2, "non_utf8")], flags=PLAIN)
@example(
    ops=[
        ("file_name", 0, "abs_outside"),
        ("file_name", 1, "dotdot"),
        ("file_name", 3, "symlink_out"),
    ],
    flags=PLAIN,
)
@example(ops=[("file_name", 1, "nul")], flags=PLAIN)
@example(ops=[("file_name", 4, "empty"), ("file_name", 0, "missing")], flags=PLAIN)
@example(ops=[("image_bomb", 1, 30000, 30000)], flags=PLAIN)
@example(
    ops=[("image_truncate", 0, 500), ("image_flip", 3, 700, 255), ("image_append", 4, b"\0")],
    flags=PLAIN,
)
@example(ops=[("image_flip", 1, 988, 255)], flags=PLAIN)  # the CRC of a PNG's IDAT chunk
@example(ops=[("image_flip", 2, 998, 255)], flags=PLAIN)  # a JPEG's end-of-image marker
@example(ops=[("text_truncate", 500)], flags=PLAIN)
def test_coco_ingest_survives_mutations(tmp_path_factory, ops, flags):
    fuzz(tmp_path_factory, "coco", ops, *flags)


@fuzz_settings("voc")
@given(ops=mutations("voc"), flags=FLAGS)
@example(ops=[("value", 0, 0, "xmin", "nan"), ("value", 2, 1, "ymax", "1e400")], flags=PLAIN)
@example(ops=[("value", 0, 0, "xmax", "2.000000001")], flags=PLAIN)
@example(ops=[("value", 1, 0, "height", "1e400")], flags=PLAIN)
@example(ops=[("file_name", 3, "non_utf8"), ("file_name", 1, "dotdot")], flags=PLAIN)
@example(ops=[("file_name", 0, "abs_outside"), ("file_name", 4, "symlink_out")], flags=PLAIN)
@example(ops=[("image_bomb", 4, 30000, 30000)], flags=PLAIN)
@example(ops=[("image_truncate", 2, 600), ("image_flip", 1, 500, 1)], flags=PLAIN)
@example(ops=[("image_flip", 3, 985, 255)], flags=PLAIN)  # the CRC of a PNG's IDAT chunk
@example(ops=[("text_flip", 1, 300, 0x20)], flags=PLAIN)
def test_voc_ingest_survives_mutations(tmp_path_factory, ops, flags):
    fuzz(tmp_path_factory, "voc", ops, *flags)
