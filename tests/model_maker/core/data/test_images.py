import io

import numpy as np
import pytest
from PIL import Image

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


def test_truncated_non_image_and_missing(tmp_path):
    data = _bytes(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG"
    )
    with pytest.raises(ImageReadError) as truncated:
        load_image(data=data[: len(data) // 2])
    assert truncated.value.kind == "unreadable_image" and "truncated" in truncated.value.detail
    with pytest.raises(ImageReadError) as text:
        load_image(data=b"this is not an image")
    assert text.value.kind == "unreadable_image"
    with pytest.raises(ImageReadError) as missing:
        load_image(str(tmp_path / "nope.jpg"))
    assert missing.value.kind == "missing_image" and "nope.jpg" in missing.value.detail


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
