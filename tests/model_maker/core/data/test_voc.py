import pytest

from model_maker.core.data.voc import list_voc, parse_voc
from model_maker.core.errors import DataError

XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>
"""


def _dataset(tmp_path, names=("b", "a")):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    for name in names:
        (tmp_path / "annotations" / f"{name}.xml").write_text(XML.format(name=name))
    return tmp_path


def test_list_and_parse(tmp_path):
    items = list_voc(_dataset(tmp_path))
    assert [(i.image_id, i.xml_path.rsplit("/", 1)[1]) for i in items] == [
        (1, "a.xml"),
        (2, "b.xml"),
    ]
    image = parse_voc(items[0])
    assert image.file_name == "a.jpg" and (image.width, image.height) == (64, 48)
    assert [(b.xmin, b.ymin, b.xmax, b.ymax, b.label) for b in image.boxes] == [
        (1, 2, 30, 40, "cat")
    ]


def test_split_lists(tmp_path):
    _dataset(tmp_path, ("a", "b", "c"))
    (tmp_path / "train.txt").write_text("a\nc\n")
    (tmp_path / "val.txt").write_text("b 1\n")
    files = {"train": str(tmp_path / "train.txt"), "val": str(tmp_path / "val.txt")}
    assert [(i.image_id, i.split) for i in list_voc(tmp_path, files)] == [
        (1, "train"),
        (2, "val"),
        (3, "train"),
    ]
    (tmp_path / "val.txt").write_text("zzz\n")
    with pytest.raises(DataError, match="val.txt: id 'zzz' has no"):
        list_voc(tmp_path, files)


def test_malformed_xml_names_file_line_column(tmp_path):
    _dataset(tmp_path, ("a",))
    (tmp_path / "annotations" / "a.xml").write_text(
        "<annotation>\n  <filename>a.jpg</filename>\n  <size>\n</annotation>"
    )
    (item,) = list_voc(tmp_path)
    with pytest.raises(DataError, match=r"a.xml:4:\d+: malformed XML: mismatched tag"):
        parse_voc(item)


def test_bad_object_names_file_and_object(tmp_path):
    _dataset(tmp_path, ("a",))
    path = tmp_path / "annotations" / "a.xml"
    path.write_text(XML.format(name="a").replace("<xmax>30</xmax>", "<xmax>thirty</xmax>"))
    (item,) = list_voc(tmp_path)
    with pytest.raises(DataError, match=r"a.xml: object 0 \(cat\): <xmax> must be a number"):
        parse_voc(item)


def test_missing_folders(tmp_path):
    with pytest.raises(DataError, match="no annotations/ folder"):
        list_voc(tmp_path)
