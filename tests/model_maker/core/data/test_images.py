import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from model_maker.core.data.images import ImageReadError, load_image


def _bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _decode(loaded):
    return np.asarray(Image.open(io.BytesIO(loaded.encoded)))


def _kinds(loaded):
    return [kind for kind, _ in loaded.repairs]


def test_clean_jpeg_passes_through():
    data = _bytes(Image.new("RGB", (10, 8), (200, 10, 10)), "JPEG")
    loaded = load_image(data=data)
    assert (
        loaded.encoded == data
        and loaded.format == "jpeg"
        and (loaded.width, loaded.height) == (10, 8)
    )


@pytest.mark.parametrize(
    "image, fmt, kind",
    [
        (Image.new("L", (12, 9), 90), "JPEG", "converted_grayscale"),
        (Image.new("RGBA", (12, 9), (10, 20, 30, 255)), "PNG", "converted_rgba"),
        (Image.new("CMYK", (12, 9), (0, 255, 255, 0)), "JPEG", "converted_cmyk"),
        (Image.new("RGB", (12, 9), (0, 0, 255)).convert("P"), "PNG", "converted_palette"),
        (Image.new("RGB", (12, 9), (0, 0, 255)), "BMP", "converted_format"),
    ],
)
def test_modes_are_converted_to_rgb_and_counted(image, fmt, kind):
    loaded = load_image(data=_bytes(image, fmt))
    assert kind in _kinds(loaded)
    pixels = _decode(loaded)
    assert pixels.shape == (9, 12, 3) and pixels.dtype == np.uint8
    assert loaded.format == ("jpeg" if fmt == "JPEG" else "png")


def test_grayscale_keeps_its_grey_level():
    pixels = _decode(load_image(data=_bytes(Image.new("L", (8, 8), 90), "PNG")))
    assert pixels.shape == (8, 8, 3) and set(np.unique(pixels)) == {90}


def test_cmyk_red_stays_red():
    pixels = _decode(load_image(data=_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")))
    r, g, b = pixels[4, 4].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_sixteen_bit_scales_to_eight_bit():
    array = np.array([[0, 65535], [32896, 65535]], dtype=np.uint16)
    loaded = load_image(data=_bytes(Image.fromarray(array), "PNG"))
    assert _kinds(loaded) == ["converted_16bit"]
    assert _decode(loaded)[..., 0].tolist() == [[0, 255], [128, 255]]


def test_rgba_alpha_is_composited_on_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    pixels = _decode(load_image(data=_bytes(image, "PNG")))
    assert pixels.min() == 255


def _rotated_jpeg(orientation: int) -> bytes:
    # Stored 40 wide x 20 high; left half black, right half white.
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _bytes(Image.fromarray(array), "JPEG", exif=exif, quality=100)


def test_exif_rotation_is_applied_and_stripped():
    loaded = load_image(data=_rotated_jpeg(6))
    assert _kinds(loaded) == ["exif_rotated"]
    assert (loaded.width, loaded.height) == (20, 40)
    out = Image.open(io.BytesIO(loaded.encoded))
    assert out.getexif().get(0x0112) in (None, 1)
    pixels = np.asarray(out)
    # Orientation 6 = rotate 90 clockwise for display: the left (black) half goes on top.
    assert pixels[5, 10].mean() < 60 and pixels[35, 10].mean() > 200


def test_exif_rotation_ignored_when_annotation_matches_stored_pixels():
    loaded = load_image(data=_rotated_jpeg(6), declared_size=(40, 20))
    assert (loaded.width, loaded.height) == (40, 20)
    assert "ignored" in loaded.repairs[0][1]


def _assert_stored_pixels(loaded):
    assert (loaded.width, loaded.height) == (40, 20)
    out = Image.open(io.BytesIO(loaded.encoded))
    assert out.getexif().get(0x0112) is None
    pixels = np.asarray(out)
    assert pixels[10, 5].mean() < 60 and pixels[10, 35].mean() > 200  # black left, white right


@pytest.mark.parametrize("declared_size", [(0, 0), (40, 20), (20, 40)])
@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_exif_orientation_outside_1_to_8_is_ignored_and_reported(orientation, declared_size):
    loaded = load_image(data=_rotated_jpeg(orientation), declared_size=declared_size)
    assert loaded.repairs == (("exif_invalid", f"orientation {orientation} is not 1..8; ignored"),)
    _assert_stored_pixels(loaded)


def test_exif_orientation_1_is_nothing_to_do():
    data = _rotated_jpeg(1)
    loaded = load_image(data=data)
    assert (loaded.repairs, loaded.encoded, loaded.width, loaded.height) == ((), data, 40, 20)


def test_unparsable_exif_keeps_the_pixels_and_is_reported(monkeypatch):
    def broken_getexif(self):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image.Image, "getexif", broken_getexif)
    loaded = load_image(data=_rotated_jpeg(6))
    assert loaded.repairs == (
        (
            "exif_invalid",
            "EXIF unreadable (error: unpack requires a buffer of 4 bytes); orientation ignored",
        ),
    )
    assert (loaded.width, loaded.height) == (40, 20)


def _jpeg_with_orientation_entry(tag_type: int, count: int, value: bytes) -> bytes:
    """The stored 40x20 image of ``_rotated_jpeg`` with a hand-written EXIF orientation."""
    if len(value) <= 4:
        entry, extra = value.ljust(4, b"\0"), b""
    else:  # stored after the IFD: header 8 + entry count 2 + entry 12 + next IFD 4
        entry, extra = struct.pack("<I", 26), value
    ifd = struct.pack("<HHHI", 1, 0x0112, tag_type, count) + entry + struct.pack("<I", 0)
    exif = b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd + extra
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, 20:] = 255
    return _bytes(Image.fromarray(array), "JPEG", exif=exif, quality=100)


@pytest.mark.parametrize(
    "tag_type, count, value, shown",
    [
        (4, 1, struct.pack("<I", 65537), "65537"),  # LONG: more than a SHORT holds
        (9, 1, struct.pack("<i", -6), "-6"),  # SLONG
        (2, 4, b"six\0", "'six'"),  # ASCII
        (5, 1, struct.pack("<II", 6, 1), "6.0"),  # RATIONAL 6/1: not an integer
        (7, 1, b"\x06", "b'\\x06'"),  # UNDEFINED
    ],
    ids=["long_65537", "slong_negative", "ascii", "rational", "undefined"],
)
def test_hostile_exif_orientation_is_ignored_and_reported(tag_type, count, value, shown):
    loaded = load_image(data=_jpeg_with_orientation_entry(tag_type, count, value))
    assert loaded.repairs == (("exif_invalid", f"orientation {shown} is not 1..8; ignored"),)
    _assert_stored_pixels(loaded)


def test_non_image_and_missing(tmp_path):
    with pytest.raises(ImageReadError) as text:
        load_image(data=b"this is not an image")
    assert text.value.kind == "unreadable_image"
    with pytest.raises(ImageReadError) as missing:
        load_image(str(tmp_path / "nope.jpg"))
    assert missing.value.kind == "missing_image" and "nope.jpg" in missing.value.detail


def _textured(size: int = 64) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    array = np.stack([x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256], -1).astype(np.uint8)
    return Image.fromarray(array ^ np.random.default_rng(0).integers(0, 32, array.shape, np.uint8))


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _scan_start(data: bytes) -> int:
    """Offset of the first entropy-coded byte of a JPEG without an EXIF thumbnail."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def test_truncated_jpeg_keeps_the_part_that_decodes():
    data = _bytes(_textured(), "JPEG", quality=90)
    cut = data[: len(data) * 65 // 100]
    loaded = load_image(data=cut)
    assert _kinds(loaded) == ["recovered_truncated"]
    assert loaded.repairs[0][1] == (
        f"file ends after {len(cut):,} bytes, without an end marker: decoded up to the cut, "
        "the rest filled gray (bottom 15 of 64 rows entirely)"
    )
    assert (loaded.format, loaded.width, loaded.height) == ("jpeg", 64, 64)
    out = Image.open(io.BytesIO(loaded.encoded))
    out.load()  # fully, without "image file is truncated"
    pixels, full = np.asarray(out).astype(int), _pixels(data)
    assert np.abs(pixels[:32] - full[:32]).mean() < 3
    assert np.abs(pixels[-15:] - 128).mean() < 3  # gray, but for re-encoding ringing


def test_truncated_progressive_jpeg_keeps_the_scans_present():
    data = _bytes(_textured(), "JPEG", quality=90, progressive=True)
    cut = data[: len(data) // 2]
    loaded = load_image(data=cut)
    assert _kinds(loaded) == ["recovered_truncated"] and "progressive" in loaded.repairs[0][1]
    assert (loaded.width, loaded.height) == (64, 64)
    # Less detail, but the whole picture.
    assert np.abs(_pixels(loaded.encoded) - _pixels(data)).mean() < 10


def test_recovered_jpeg_decodes_in_tensorflow():
    import os

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    data = _bytes(_textured(), "JPEG", quality=90)
    loaded = load_image(data=data[: len(data) * 6 // 10])
    assert tf.io.decode_jpeg(loaded.encoded).shape == (64, 64, 3)
    assert tf.io.decode_image(loaded.encoded).shape == (64, 64, 3)


def _header_only(data: bytes) -> bytes:
    return data[: _scan_start(data)]


@pytest.mark.parametrize(
    "cut",
    [
        lambda data: data[:100],
        _header_only,
        lambda data: data[:3] + np.random.default_rng(1).integers(0, 256, 1000, np.uint8).tobytes(),
    ],
    ids=["first_100_bytes", "header_only", "garbage_after_soi"],
)
def test_jpeg_without_decodable_data_stays_unreadable(cut):
    with pytest.raises(ImageReadError) as failed:
        load_image(data=cut(_bytes(_textured(), "JPEG", quality=90)))
    assert failed.value.kind == "unreadable_image"


def test_truncated_png_stays_unreadable():
    data = _bytes(_textured(), "PNG")
    with pytest.raises(ImageReadError) as truncated:
        load_image(data=data[: len(data) * 6 // 10])
    assert truncated.value.kind == "unreadable_image" and "truncated" in truncated.value.detail


def test_sixteen_bit_rgb_png_is_re_encoded_as_eight_bit():
    import tensorflow as tf

    array = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    loaded = load_image(data=tf.io.encode_png(array).numpy())
    assert _kinds(loaded) == ["converted_16bit"]
    assert loaded.encoded[24] == 8
    assert _decode(loaded)[0, 1].tolist() == (array[0, 1] >> 8).tolist()


def test_animated_gif_keeps_its_first_frame_and_says_so():
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(data=buffer.getvalue())
    assert loaded.repairs == (
        ("converted_palette", "mode P"),
        ("converted_format", "gif re-encoded as PNG, first of 3 frames"),
    )
    decoded = Image.open(io.BytesIO(loaded.encoded))
    assert decoded.format == "PNG" and decoded.getpixel((0, 0)) == (255, 0, 0)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` RGB pixels (one row of data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * (1 + 3 * min(width, 64))))
        + _png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_unreadable_and_names_its_size():
    data = _png_claiming(30000, 30000)
    assert len(data) < 200
    with pytest.raises(ImageReadError) as bomb:
        load_image(data=data)
    limit = 2 * Image.MAX_IMAGE_PIXELS
    assert bomb.value.kind == "unreadable_image"
    assert bomb.value.detail == (
        f"claims 30000x30000 pixels (900,000,000), more than the {limit:,} Pillow decodes"
    )


@pytest.mark.filterwarnings("error")
def test_large_image_under_pillow_limit_decodes_without_a_warning(monkeypatch):
    # Pillow warns between MAX_IMAGE_PIXELS and twice that; lower the limit for this test
    # only, so that a 40x40 image (1600 pixels, limit 1000) is "large".
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _bytes(Image.new("RGB", (40, 40), (1, 2, 3)), "PNG")
    loaded = load_image(data=data)
    assert (loaded.width, loaded.height, loaded.repairs) == (40, 40, ())
    with pytest.raises(ImageReadError, match=r"claims 50x50 pixels \(2,500\), more than the 2,000"):
        load_image(data=_bytes(Image.new("RGB", (50, 50)), "PNG"))


@pytest.mark.parametrize("error", [TypeError("bad"), IndexError("bad"), MemoryError()])
def test_unexpected_decoder_errors_make_the_image_unreadable(monkeypatch, error):
    # Stands for a Pillow bug on hostile bytes: nothing may escape load_image.
    def broken_load(self):
        raise error

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken_load)
    with pytest.raises(ImageReadError) as failed:
        load_image(data=_bytes(Image.new("RGB", (8, 8)), "PNG"))
    assert failed.value.kind == "unreadable_image"
    assert type(error).__name__ in failed.value.detail


def test_png_with_a_bad_chunk_checksum_is_reencoded_and_counted():
    # Pillow decodes it; TensorFlow's decode_png refuses it ("Invalid PNG data").
    import tensorflow as tf

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[data.rfind(b"IEND") - 5] ^= 0xFF  # last byte of the IDAT checksum
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_png(bytes(data))
    loaded = load_image(data=bytes(data))
    assert [kind for kind, _ in loaded.repairs] == ["reencoded_damaged"]
    assert tf.io.decode_png(loaded.encoded).shape == (20, 24, 3)


@pytest.mark.timeout(20)
def test_a_fifo_named_as_an_image_is_unreadable_not_a_hang(tmp_path):
    import os

    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(ImageReadError) as error:
        load_image(str(fifo))
    assert error.value.kind == "unreadable_image" and "not a regular file" in error.value.detail
