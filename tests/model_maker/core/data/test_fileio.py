"""The data layer's file access on local paths and on a Beam filesystem URI.

``memtest://`` is an in-memory Beam ``FileSystem`` registered by a fixture of
this module: a stand-in for an object store (gs://, s3://) that the tests
cannot reach. Like those, it has no folders (only names with ``/``), and a
failed read raises its own exception type rather than an ``OSError``. Any
call site still using ``open()`` or ``os.*`` on such a URI fails here.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import struct

import pytest
from PIL import Image

from model_maker.core.data import coco, fileio, folder, tfrecord
from model_maker.core.data.demo_data import generate_demo_data, render_image
from model_maker.core.data.images import ImageReadError, load_image
from model_maker.core.data.ingest import IngestOptions, ingest
from model_maker.core.data.labels import LabelClass, LabelMap
from model_maker.core.data.records import decode_example
from model_maker.core.errors import DataError
from tests.memtest_fs import UNREADABLE, upload


@pytest.fixture(params=["local", "memtest"])
def root(request, tmp_path) -> str:
    """A folder on the local disk or in ``memtest://``."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("mem")


def read_records(pattern: str) -> list[bytes]:
    """The serialized records of the gzipped TFRecord files matching ``pattern`` (no TF)."""
    out = []
    for path in fileio.glob(pattern):
        data = gzip.decompress(fileio.read_bytes(path))
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            offset += 12  # length, its CRC
            out.append(data[offset : offset + length])
            offset += length + 4  # data, its CRC
    return out


def examples(pattern: str) -> list[tuple]:
    """Records as comparable tuples, sorted by image id."""
    decoded = [decode_example(r) for r in read_records(pattern)]
    return sorted(
        (e.source_id, e.filename, e.width, e.height, tuple(e.boxes), tuple(e.labels), e.encoded)
        for e in decoded
    )


# --- the functions themselves ------------------------------------------------------------


def test_read_write_list_glob_remove(root):
    fileio.makedirs(fileio.join(root, "a", "b"))
    fileio.write_text(fileio.join(root, "a", "b", "x.json"), '{"k": 1}\r\nsecond\n')
    fileio.write_bytes(fileio.join(root, "a", "y.bin"), b"\x00\xff")
    fileio.write_text(fileio.join(root, "top.txt"), "héllo")

    assert fileio.read_text(fileio.join(root, "a", "b", "x.json")) == '{"k": 1}\nsecond\n'
    assert fileio.read_bytes(fileio.join(root, "a", "b", "x.json")) == b'{"k": 1}\r\nsecond\n'
    assert fileio.read_bytes(fileio.join(root, "a", "y.bin")) == b"\x00\xff"
    assert fileio.read_text(fileio.join(root, "top.txt")) == "héllo"
    assert sorted(fileio.listdir(root)) == ["a", "top.txt"]
    assert sorted(fileio.listdir(fileio.join(root, "a"))) == ["b", "y.bin"]
    assert fileio.isdir(root) and fileio.isdir(fileio.join(root, "a"))
    assert fileio.isdir(fileio.join(root, "a") + "/")
    assert not fileio.isdir(fileio.join(root, "top.txt"))
    assert not fileio.isdir(fileio.join(root, "a", "y"))  # a prefix of a name is no folder
    assert fileio.isfile(fileio.join(root, "top.txt"))
    assert not fileio.isfile(fileio.join(root, "a"))
    assert fileio.exists(fileio.join(root, "a")) and fileio.exists(fileio.join(root, "top.txt"))
    assert not fileio.exists(fileio.join(root, "nothing"))
    assert sorted(fileio.glob(fileio.join(root, "*", "*.bin"))) == [fileio.join(root, "a", "y.bin")]
    assert sorted(fileio.glob(fileio.join(root, "*.txt"))) == [fileio.join(root, "top.txt")]
    assert sorted(fileio.walk_files(root)) == sorted(
        fileio.join(root, *p) for p in (("a", "b", "x.json"), ("a", "y.bin"), ("top.txt",))
    )
    fileio.makedirs(fileio.join(root, "a"))  # existing: fine
    fileio.remove(fileio.join(root, "a", "y.bin"))
    assert not fileio.exists(fileio.join(root, "a", "y.bin"))
    assert fileio.listdir(fileio.join(root, "a")) == ["b"]


def test_missing_files_raise_file_not_found_naming_the_path(root):
    path = fileio.join(root, "missing.json")
    for call in (fileio.read_bytes, fileio.read_text, fileio.listdir):
        with pytest.raises(FileNotFoundError) as info:
            call(path)
        assert info.value.filename == path and info.value.strerror
    with pytest.raises(DataError, match="missing.json: annotation file not found"):
        coco.load_json(path)
    with pytest.raises(ImageReadError, match=re.escape(f"no file {path}")):
        load_image(path=path)
    with pytest.raises(DataError, match="missing.json: cannot read label map"):
        LabelMap.load(path)


def test_remote_specifics(mem, store):
    assert fileio.is_remote(mem) and not fileio.is_remote("relative/dir")
    assert not fileio.is_remote("/abs/dir")
    assert fileio.abspath(mem) == mem
    assert fileio.join(mem + "/", "a", "b") == f"{mem}/a/b"
    # No folders in an object store: makedirs is a no-op, an empty prefix is nothing.
    fileio.makedirs(fileio.join(mem, "empty"))
    assert not fileio.isdir(fileio.join(mem, "empty"))
    # A folder marker object ("dir/", as cloud consoles make) is a folder without entries.
    store[f"{mem}/marked/"] = b""
    assert fileio.isdir(f"{mem}/marked") and fileio.listdir(f"{mem}/marked") == []
    assert fileio.walk_files(mem) == []
    # A read failing for another reason than absence is an OSError with the client's message.
    secret = f"{mem}/{UNREADABLE}.json"
    store[secret] = b"{}"
    with pytest.raises(OSError) as info:
        fileio.read_bytes(secret)
    assert not isinstance(info.value, FileNotFoundError)
    assert info.value.filename == secret and "403 access denied" in info.value.strerror
    with pytest.raises(DataError, match=f"{secret}: cannot read .*403 access denied"):
        coco.load_json(secret)
    with pytest.raises(ImageReadError, match=f"{secret}: StoreError: 403 access denied"):
        load_image(path=secret)
    with pytest.raises(DataError, match="no Apache Beam filesystem handles nosuchfs://"):
        fileio.read_bytes("nosuchfs://bucket/x")


def test_remote_folder_names_with_pattern_characters(mem):
    odd = fileio.join(mem, "odd [1]*?")
    fileio.write_bytes(fileio.join(odd, "sub", "f.xml"), b"<a/>")
    fileio.write_bytes(fileio.join(mem, "odd x1yzq", "other.xml"), b"<b/>")  # matches odd?1???
    assert fileio.isdir(odd) and fileio.listdir(odd) == ["sub"]
    assert fileio.walk_files(odd) == [fileio.join(odd, "sub", "f.xml")]
    assert fileio.read_bytes(fileio.join(odd, "sub", "f.xml")) == b"<a/>"
    assert not fileio.isdir(fileio.join(mem, "odd [2]"))


def test_local_paths_keep_os_semantics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fileio.makedirs("rel/sub")
    fileio.write_text("rel/sub/f.txt", "x")
    assert fileio.listdir("rel") == ["sub"] and fileio.isdir("rel/sub")
    assert fileio.read_text("rel/sub/f.txt") == "x"
    assert fileio.abspath("rel") == str(tmp_path / "rel")
    assert fileio.glob("rel/*/*.txt") == ["rel/sub/f.txt"]
    fileio.makedirs("rel/empty")  # a real, empty folder on disk
    assert fileio.isdir("rel/empty") and fileio.listdir("rel/empty") == []
    with pytest.raises(IsADirectoryError):
        fileio.read_bytes("rel")


# --- label maps and listings ---------------------------------------------------------------


def test_label_map_round_trip(root):
    label_map = LabelMap((LabelClass(1, "cat", 17), LabelClass(2, "dog")))
    path = fileio.join(root, "label_map.json")
    label_map.save(path)
    assert LabelMap.load(path) == label_map
    pbtxt = fileio.join(root, "map.pbtxt")
    fileio.write_text(pbtxt, "item { id: 1 name: 'cat' }\nitem { id: 3 name: 'owl' }\n")
    assert LabelMap.load(pbtxt).names == ["cat", "owl"]
    assert tfrecord.find_label_map(root) == label_map


def test_class_folders_listed_alike(tmp_path, mem):
    for name, files in {"cat": ["1.jpg", "2.png", "notes.txt"], "dog": ["3.jpeg"]}.items():
        (tmp_path / "src" / name).mkdir(parents=True)
        for file_name in files:
            (tmp_path / "src" / name / file_name).write_bytes(b"x")
    upload(tmp_path / "src", mem)
    local = folder.read_folders(tmp_path / "src")
    remote = folder.read_folders(mem)
    assert remote[0] == local[0] and remote[0].names == ["cat", "dog"]
    assert [i.file_name for i in remote[1]] == [i.file_name for i in local[1]]
    assert [i.path for i in remote[1]] == [
        f"{mem}/cat/1.jpg",
        f"{mem}/cat/2.png",
        f"{mem}/dog/3.jpeg",
    ]
    assert remote[2] == [f"{mem}/cat/notes.txt"]


def test_tfrecord_files_listed_alike(tmp_path, mem):
    layout = {
        "split/Split-train/data-0.gz": b"a",
        "split/Split-eval/data-0.gz": b"b",
        "split/label_map.json": b"{}",
        "flat/x/part-1": b"c",
        "flat/part-0": b"d",
        "flat/stats.json": b"{}",
        "flat/README.md": b"",
    }
    for rel, data in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        fileio.write_bytes(fileio.join(mem, rel), data)

    def listing(root: str, name: str, splits=None) -> dict:
        base = fileio.join(root, name)
        found = tfrecord.list_record_files(base, splits)
        return {k: [f[len(base) :] for f in v] for k, v in found.items()}

    local, remote = str(tmp_path), mem
    assert listing(remote, "split") == listing(local, "split")
    assert listing(remote, "split") == {
        "eval": ["/Split-eval/data-0.gz"],
        "train": ["/Split-train/data-0.gz"],
    }
    assert listing(remote, "flat") == listing(local, "flat") == {"": ["/part-0", "/x/part-1"]}
    patterns = {"train": "Split-train/*.gz", "eval": fileio.join(mem, "split", "Split-eval", "*")}
    assert listing(remote, "split", patterns) == {
        "train": ["/Split-train/data-0.gz"],
        "eval": ["/Split-eval/data-0.gz"],
    }
    with pytest.raises(DataError, match="no TFRecord files match"):
        tfrecord.list_record_files(fileio.join(mem, "split"), {"train": "nothing-*"})
    with pytest.raises(DataError, match="TFRecord folder not found"):
        tfrecord.list_record_files(fileio.join(mem, "absent"))


# --- ingestion end to end ------------------------------------------------------------------


def _outputs(output: str, splits) -> dict:
    """Everything ingest wrote, with the output folder's name taken out."""
    stats = json.loads(fileio.read_text(fileio.join(output, "stats.json")))
    stats.pop("input")
    text = json.dumps(stats).replace(output, "<out>")
    return {
        "records": {
            s: examples(fileio.join(output, f"Split-{s}", "data_tfrecord-*.gz")) for s in splits
        },
        "label_map": fileio.read_text(fileio.join(output, "label_map.json")),
        "annotations": {
            s: json.loads(fileio.read_text(fileio.join(output, f"{s}_annotations.json")))
            for s in splits
        },
        "stats": text,
    }


def test_coco_ingest_from_and_to_memtest_matches_local(tmp_path, mem, store):
    data = generate_demo_data(tmp_path / "src", num_images=6, seed=3)
    upload(tmp_path / "src", fileio.join(mem, "coco"))
    splits = {"train": 0.5, "eval": 0.5}
    local = ingest(
        IngestOptions(
            format="coco",
            input=data.images_dir,
            annotations=data.annotations,
            output=str(tmp_path / "out"),
            split_ratios=splits,
        )
    )
    output = fileio.join(mem, "examples")
    stale = fileio.join(output, "Split-train", "data_tfrecord-00009-of-00010.gz")
    fileio.write_bytes(stale, b"left by an earlier run")
    remote = ingest(
        IngestOptions(
            format="coco",
            input=fileio.join(mem, "coco", "images"),
            annotations=fileio.join(mem, "coco", "annotations.json"),
            output=output,
            split_ratios=splits,
        ),
        ["--direct_num_workers=1"],
    )
    assert stale not in store
    assert remote.images == local.images and sum(remote.images.values()) == 6
    assert remote.boxes == local.boxes and sum(remote.boxes.values()) == data.num_boxes
    assert remote.label_map == local.label_map and remote.issues == ()
    assert remote.stats["input"] == fileio.join(mem, "coco", "images")
    for split in remote.splits:
        assert fileio.isfile(remote.annotations_path(split))
        assert fileio.glob(remote.record_pattern(split))
    assert fileio.isfile(remote.label_map_path) and fileio.isfile(remote.stats_path)
    expected = _outputs(str(tmp_path / "out"), local.splits)
    assert _outputs(output, remote.splits) == expected
    assert all(expected["records"][s] for s in local.splits)  # both splits hold records
    assert not [p for p in store if "beam-temp" in p]  # the sink cleaned up its temp files
    assert not [p for p in store if ".ingest-staging" in p]  # moved into place, then removed

    # The records read back from memtest:// as TFRecord input pass through unchanged.
    again = ingest(
        IngestOptions(format="tfrecord", input=output, output=fileio.join(mem, "again")),
        ["--direct_num_workers=1"],
    )
    assert set(again.splits) == set(remote.splits) and again.images == remote.images
    assert again.label_map == remote.label_map
    for split in again.splits:
        assert examples(again.record_pattern(split)) == expected["records"][split]


def test_voc_ingest_from_memtest_with_split_files(tmp_path, mem, raccoon_dir):
    # raccoon-150 is greyscale: its repair is reported with the remote path.
    stems = {"train": ["raccoon-1", "raccoon-150"], "eval": ["raccoon-10"]}
    src = tmp_path / "voc"
    for sub in ("annotations", "images"):
        (src / sub).mkdir(parents=True)
    for split, names in stems.items():
        (src / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
        for name in names:
            shutil.copy(raccoon_dir / "annotations" / f"{name}.xml", src / "annotations")
            shutil.copy(raccoon_dir / "images" / f"{name}.jpg", src / "images")
    upload(src, fileio.join(mem, "voc"))

    def run(dataset: str, output: str):
        files = {s: fileio.join(dataset, f"{s}.txt") for s in stems}
        options = IngestOptions(format="voc", input=dataset, output=output, split_files=files)
        return ingest(options, ["--direct_num_workers=1"])

    local = run(str(src), str(tmp_path / "out"))
    remote = run(fileio.join(mem, "voc"), fileio.join(mem, "out"))
    assert remote.images == local.images == {"train": 2, "eval": 1}
    assert remote.label_map.names == ["raccoon"]
    (issue,) = remote.issues
    assert issue.kind == "converted_grayscale"
    assert issue.where.startswith(f"{mem}/voc/annotations/raccoon-150.xml")
    local_out = _outputs(str(tmp_path / "out"), local.splits)
    remote_out = _outputs(fileio.join(mem, "out"), remote.splits)
    assert remote_out["stats"] == local_out["stats"].replace(str(src), f"{mem}/voc")
    remote_out.pop("stats"), local_out.pop("stats")
    assert remote_out == local_out


def test_broken_remote_image_is_reported_like_a_local_one(tmp_path, mem):
    pixels, _ = render_image(0, 0, 64)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    fileio.write_bytes(fileio.join(mem, "img", "good.png"), buffer.getvalue())
    fileio.write_bytes(fileio.join(mem, "img", "bad.png"), b"not an image")
    loaded = load_image(path=fileio.join(mem, "img", "good.png"))
    assert (loaded.width, loaded.height) == (64, 64) and loaded.encoded == buffer.getvalue()
    with pytest.raises(ImageReadError, match="not an image file"):
        load_image(path=fileio.join(mem, "img", "bad.png"))
