"""Reading images for ingestion: decode fully, convert to 8-bit RGB, apply EXIF orientation.

Clean RGB JPEG and PNG files pass through byte for byte; anything converted is
re-encoded (JPEG sources as JPEG quality 95, everything else as lossless PNG),
without EXIF, so that TensorFlow's decoders (which ignore EXIF) see exactly the
pixels the boxes refer to.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_maker.core.data import fileio

EXIF_ORIENTATION = 0x0112
# Orientations 5..8 swap width and height.
_TRANSPOSING = frozenset({5, 6, 7, 8})
_MODE_KINDS = {
    "1": "converted_grayscale",
    "L": "converted_grayscale",
    "LA": "converted_rgba",
    "RGBA": "converted_rgba",
    "RGBa": "converted_rgba",
    "La": "converted_rgba",
    "CMYK": "converted_cmyk",
    "YCbCr": "converted_format",
    "P": "converted_palette",
    "PA": "converted_palette",
    "I;16": "converted_16bit",
    "I;16B": "converted_16bit",
    "I;16L": "converted_16bit",
    "I;16N": "converted_16bit",
    "I": "converted_16bit",
    "F": "converted_16bit",
}
JPEG_QUALITY = 95
# Byte offset of the bit depth in a PNG file (signature 8 + chunk length 4 + "IHDR" 4 + 8).
PNG_BIT_DEPTH = 24


class ImageReadError(Exception):
    """An image that cannot be read; ``kind`` is missing_image or unreadable_image."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for a record.

    Attributes:
      encoded: JPEG or PNG bytes of 8-bit RGB pixels, without EXIF orientation.
      format: "jpeg" or "png".
      width: width in pixels of ``encoded``.
      height: height in pixels of ``encoded``.
      repairs: (kind, detail) pairs of every conversion made.
    """

    encoded: bytes
    format: str
    width: int
    height: int
    repairs: tuple[tuple[str, str], ...] = ()


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str | None, str]:
    mode = image.mode
    if mode == "RGB":
        return image, None, ""
    kind = _MODE_KINDS.get(mode, "converted_format")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image)
        if mode == "F":
            array = np.clip(array, 0.0, 1.0) * 255.0 if array.max() <= 1.0 else array
            array8 = np.clip(array, 0, 255).astype(np.uint8)
        else:
            top = 65535 if array.max() > 255 or mode.startswith("I;16") else 255
            array8 = (array.astype(np.float64) * 255.0 / top).round().astype(np.uint8)
        return Image.fromarray(array8, "L").convert("RGB"), kind, f"mode {mode}"
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        # Alpha is dropped by compositing on white, the way viewers show it.
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), kind, f"mode {mode}"
    return image.convert("RGB"), kind, f"mode {mode}"


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_image(
    path: str = "",
    data: bytes = b"",
    declared_size: tuple[int, int] = (0, 0),
) -> LoadedImage:
    """Read the image at ``path`` (or ``data``), fully decoded, as 8-bit RGB.

    ``declared_size`` is the (width, height) of the annotation. With an EXIF
    rotation, the boxes are taken to refer to the rotated (displayed) image,
    unless the declared size matches only the stored pixels.

    Raises:
      ImageReadError: missing file, truncated or non-image data.
    """
    if not data:
        try:
            data = fileio.read_bytes(path)
        except FileNotFoundError:
            raise ImageReadError("missing_image", f"no file {path}") from None
        except OSError as exc:
            raise ImageReadError("missing_image", f"{path}: {exc.strerror}") from None
    try:
        image = Image.open(io.BytesIO(data))
        source_format = (image.format or "").lower()
        image.load()
        frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        raise ImageReadError("unreadable_image", "not an image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError("unreadable_image", f"cannot decode: {exc}") from None

    repairs: list[tuple[str, str]] = []
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation not in (1, None):
        raw = image.size
        rotated = (raw[1], raw[0]) if orientation in _TRANSPOSING else raw
        if declared_size in ((0, 0), rotated) or rotated == raw:
            image = ImageOps.exif_transpose(image)
            repairs.append(("exif_rotated", f"orientation {orientation} applied"))
        else:
            repairs.append(
                ("exif_rotated", f"orientation {orientation} ignored: boxes match stored pixels")
            )
    image, kind, detail = _to_rgb(image)
    if kind:
        repairs.append((kind, detail))
    elif source_format == "png" and len(data) > PNG_BIT_DEPTH and data[PNG_BIT_DEPTH] == 16:
        # Pillow reads 48/64-bit PNGs as 8-bit RGB(A); the file itself stays 16-bit.
        repairs.append(("converted_16bit", "16-bit PNG"))
    if source_format not in ("jpeg", "png"):
        first = f", first of {frames} frames" if frames > 1 else ""  # animations: one image
        repairs.append(
            ("converted_format", f"{source_format or 'unknown'} re-encoded as PNG{first}")
        )

    fmt = "jpeg" if source_format == "jpeg" else "png"
    encoded = data if not repairs else _encode(image, fmt)
    width, height = image.size
    return LoadedImage(encoded, fmt, width, height, tuple(repairs))
