"""Which image files an annotation may name, and how names that are not UTF-8 are written."""

import os

import pytest

from model_maker.core.data.paths import is_utf8, outside_reason, printable_name


def test_printable_name_escapes_only_undecodable_bytes():
    name = os.fsdecode(b"caf\xe9-\xc3\xa9.jpg")  # latin-1 e-acute, then a UTF-8 one
    assert not is_utf8(name)
    assert printable_name(name) == "caf\\xe9-\u00e9.jpg"
    assert printable_name("ok.jpg") == "ok.jpg" and is_utf8("ok.jpg")


@pytest.mark.parametrize(
    ("file_name", "says"),
    [("/etc/passwd", "absolute name"), ("../x.jpg", "climbs out"), ("a/../../x.jpg", "climbs")],
)
def test_names_out_of_the_root(tmp_path, file_name, says):
    root = tmp_path / "images"
    root.mkdir()
    path = os.path.join(root, file_name)
    assert says in outside_reason(str(root), file_name, path)


def test_names_inside_the_root_pass(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.jpg").write_bytes(b"x")
    os.symlink(root / "sub" / "a.jpg", root / "inner.jpg")  # a symlink that stays inside
    for name in ("sub/a.jpg", "sub/../sub/a.jpg", "inner.jpg", "missing.jpg"):
        assert outside_reason(str(root), name, os.path.join(root, name)) == ""
    assert outside_reason("", "/abs.jpg", "/abs.jpg") == ""  # no root: no check (csv)


def test_a_symlinked_root_is_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    root = str(tmp_path / "alias")
    assert outside_reason(root, "a.jpg", os.path.join(root, "a.jpg")) == ""


def test_symlink_out_names_its_target(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    reason = outside_reason(str(root), "link.jpg", str(root / "link.jpg"))
    assert "symlink" in reason and str(tmp_path / "secret.jpg") in reason


def test_uris_are_judged_by_their_normalised_name():
    root = "gs://bucket/data/images"
    assert outside_reason(root, "a/b.jpg", root + "/a/b.jpg") == ""
    assert "climbs" in outside_reason(root, "../x.jpg", root + "/../x.jpg")
    assert "climbs" in outside_reason(root, "../images2/x.jpg", root + "/../images2/x.jpg")
    assert "absolute" in outside_reason(root, "gs://other/x.jpg", "gs://other/x.jpg")
