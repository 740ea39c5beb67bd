"""Reading images for ingestion: decode fully, convert to 8-bit RGB, apply EXIF orientation.

Clean RGB JPEG and PNG files pass through byte for byte; anything converted is
re-encoded (JPEG sources as JPEG quality 95, everything else as lossless PNG),
without EXIF, so that TensorFlow's decoders (which ignore EXIF) see exactly the
pixels the boxes refer to.

EXIF orientation:
  * 2..8: boxes are taken in displayed (rotated) coordinates and the pixels are
    rotated to match (exif_rotated), unless the annotation declares a width/height
    that equals only the stored (unrotated) size: the orientation is then ignored and
    reported (exif_rotated, "ignored: boxes match stored pixels").
  * 1 or no tag: nothing.
  * any other value (0, 9, 65535, a negative, a non-integer) or an EXIF block that
    cannot be parsed: ignored, pixels and size kept as stored, reported exif_invalid.

Broken inputs never abort a run and never pass silently: a JPEG cut short keeps the
part that decodes (recovered_truncated, the rest gray); everything else that cannot
be decoded (truncated PNG, decompression bomb, decoder failure of any type) raises
ImageReadError("unreadable_image").
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from model_maker.core.data import fileio

EXIF_ORIENTATION = 0x0112
# EXIF orientations 2..8 and what turns the stored pixels into the displayed image
# (as ``ImageOps.exif_transpose``); 5..8 swap width and height.
_TRANSPOSE_METHODS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
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
_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA
# What libjpeg decodes blocks without data to, in every channel.
_GRAY = 128
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


def _describe(exc: BaseException) -> str:
    """``exc`` as "Type: message" (just "Type" without a message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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


def _orientation(image: Image.Image) -> object:
    """The EXIF orientation of ``image`` as Pillow reads it (any type), 1 without one.

    Raises:
      Exception: whatever Pillow raises on an EXIF block it cannot parse.
    """
    value = image.getexif().get(EXIF_ORIENTATION)
    return 1 if value is None else value


def _orient(
    image: Image.Image, declared_size: tuple[int, int]
) -> tuple[Image.Image, tuple[str, str] | None]:
    """``image`` turned the way its EXIF orientation says, and the repair made (if any).

    Orientation 1 or none: nothing. 2..8: the pixels are turned to the displayed image,
    unless ``declared_size`` equals only the stored size (the orientation is then
    ignored, reported as exif_rotated). Anything else, including non-integers and an
    unparsable EXIF block: ignored, reported as exif_invalid.

    Raises:
      Exception: only what ``Image.transpose`` raises (e.g. MemoryError).
    """
    try:
        orientation = _orientation(image)
    except Exception as exc:  # a hostile EXIF block must not cost the pixels
        return image, ("exif_invalid", f"EXIF unreadable ({_describe(exc)}); orientation ignored")
    if type(orientation) is not int or not 1 <= orientation <= 8:  # bool, float, str, tuple...
        shown = repr(orientation) if isinstance(orientation, str | bytes) else str(orientation)
        return image, ("exif_invalid", f"orientation {shown[:40]} is not 1..8; ignored")
    if orientation == 1:
        return image, None
    raw = image.size
    rotated = (raw[1], raw[0]) if orientation in _TRANSPOSING else raw
    if declared_size in ((0, 0), rotated) or rotated == raw:
        image = image.transpose(_TRANSPOSE_METHODS[orientation])
        return image, ("exif_rotated", f"orientation {orientation} applied")
    return image, ("exif_rotated", f"orientation {orientation} ignored: boxes match stored pixels")


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _claimed_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) the header of ``data`` claims, or None if no plugin reads it.

    Reads the header with Pillow's format plugins directly, without the size check of
    ``Image.open``. Raises nothing.
    """
    prefix = data[:16]
    for name in list(Image.ID):
        try:
            factory, accept = Image.OPEN[name]
            accepted = accept(prefix) if accept else True
            if isinstance(accepted, str) or not accepted:
                continue
            with factory(io.BytesIO(data), "") as image:
                return image.size
        except Exception:  # a plugin failing just means "not this format"
            continue
    return None


def _bomb_detail(data: bytes) -> str:
    """What a decompression bomb claims, and the limit Pillow enforces. Raises nothing."""
    limit = f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,}"
    size = _claimed_size(data)
    if size is None:
        return f"claims more pixels than the {limit} Pillow decodes"
    width, height = size
    return (
        f"claims {width}x{height} pixels ({width * height:,}), more than the {limit} Pillow decodes"
    )


def _decode(data: bytes) -> Image.Image:
    """``data`` opened and fully decoded by Pillow.

    Images between ``Image.MAX_IMAGE_PIXELS`` and twice that are decoded without
    Pillow's DecompressionBombWarning (they are large, not hostile).

    Raises:
      ImageReadError: unreadable_image, for data Pillow does not recognise as an image
        or whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` pixels.
      Exception: whatever the decoder raises on data it cannot decode (OSError,
        SyntaxError, ValueError; on hostile bytes also TypeError, IndexError, ...).
    """
    with warnings.catch_warnings(action="ignore", category=Image.DecompressionBombWarning):
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageReadError("unreadable_image", "not an image file") from None
        except Image.DecompressionBombError:
            raise ImageReadError("unreadable_image", _bomb_detail(data)) from None
        image.load()
    return image


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first entropy-coded byte of JPEG ``data``; None if it has none.

    Walks the marker segments from the start (an EXIF thumbnail inside APP1 is skipped
    whole). Raises nothing.
    """
    if not data.startswith(_SOI):
        return None
    pos = len(_SOI)
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _SOS:
            return end if end < len(data) else None
        pos = end
    return None


def _last_marker(data: bytes, start: int) -> int:
    """Offset of the last marker in ``data[start:]``, or -1. Raises nothing.

    In entropy-coded data 0xFF is only followed by 0x00 (stuffing), a restart marker
    or another 0xFF, so any other pair starts a marker segment.
    """
    pos = data.rfind(b"\xff", start, len(data) - 1)
    while pos >= start:
        following = data[pos + 1]
        if following not in (0x00, 0xFF) and not 0xD0 <= following <= 0xD7:
            return pos
        pos = data.rfind(b"\xff", start, pos)
    return -1


def _gray_rows(image: Image.Image) -> int:
    """How many bottom rows of ``image`` are entirely 128, the fill past a JPEG's cut."""
    count = 0
    for row in np.asarray(image)[::-1]:
        if not (row == _GRAY).all():
            break
        count += 1
    return count


def _recover_truncated_jpeg(data: bytes) -> tuple[Image.Image, str] | None:
    """The part of a JPEG cut short that decodes, and what was done; None if nothing does.

    A JPEG cut short has no end-of-image marker and ends after its first scan began.
    With the marker appended, libjpeg decodes the data present and leaves the blocks
    past the cut at zero, i.e. gray (Pillow's LOAD_TRUNCATED_IMAGES does the same, but
    is a process-wide setting). A cut inside a marker segment between the scans of a
    progressive JPEG is moved back to that segment's start.

    Raises:
      Exception: only what the decoder raises beyond OSError, SyntaxError, ValueError.
    """
    start = _jpeg_scan_start(data)
    if start is None or data.endswith(_EOI):
        return None
    candidates = [data + _EOI]
    marker = _last_marker(data, start)
    if marker > start:
        candidates.append(data[:marker] + _EOI)
    for candidate in candidates:
        try:
            image = _decode(candidate)
        except (OSError, SyntaxError, ValueError):
            continue
        gray = _gray_rows(image)
        if image.info.get("progressive"):
            what = "progressive, decoded from the scans present with less detail"
            what += f"; bottom {gray} of {image.height} rows gray" if gray else ""
        else:
            what = "decoded up to the cut, the rest filled gray"
            what += f" (bottom {gray} of {image.height} rows entirely)" if gray else ""
        return image, f"file ends after {len(data):,} bytes, without an end marker: {what}"
    return None


def _read(path: str) -> bytes:
    """The bytes of ``path``.

    Raises:
      ImageReadError: missing_image, when the file cannot be read; unreadable_image,
        when a local path is no regular file (reading a FIFO would wait forever).
    """
    if not fileio.is_remote(path):
        try:
            mode = os.stat(path).st_mode
        except (OSError, ValueError):
            mode = None  # reported by the read below
        if mode is not None and not stat.S_ISREG(mode):
            raise ImageReadError(
                "unreadable_image", "not a regular file (a FIFO, device or folder)"
            )
    try:
        return fileio.read_bytes(path)
    except FileNotFoundError:
        raise ImageReadError("missing_image", f"no file {path}") from None
    except OSError as exc:
        raise ImageReadError("missing_image", f"{path}: {exc.strerror}") from None
    except ValueError as exc:  # a NUL in the name: no file can have it
        raise ImageReadError("missing_image", f"{path!r}: {exc}") from None


def load_image(
    path: str = "",
    data: bytes = b"",
    declared_size: tuple[int, int] = (0, 0),
) -> LoadedImage:
    """Read the image at ``path`` (or ``data``), fully decoded, as 8-bit RGB.

    ``declared_size`` is the (width, height) of the annotation, (0, 0) if unknown; it
    decides the EXIF rule of the module docstring.

    Raises:
      ImageReadError: missing_image when the file cannot be read; unreadable_image
        for everything that cannot be decoded, whatever the decoder raised (one bad
        image never aborts a run).
    """
    if not data:
        data = _read(path)
    try:
        return _load(data, declared_size)
    except ImageReadError:
        raise
    except Exception as exc:  # e.g. a Pillow bug on hostile bytes, MemoryError
        raise ImageReadError("unreadable_image", f"cannot decode: {_describe(exc)}") from None


def _stream_damage(data: bytes, source_format: str) -> str:
    """Why TensorFlow's decoder would refuse bytes that Pillow decoded ("" if it would not).

    Pillow skips PNG chunk checksums and tolerates a JPEG without its end marker;
    TensorFlow's ``decode_png``/``decode_jpeg`` refuse both, so such files cannot go
    into a record unchanged.
    """
    if source_format == "png":
        try:
            with warnings.catch_warnings(action="ignore", category=Image.DecompressionBombWarning):
                Image.open(io.BytesIO(data)).verify()  # reads every chunk, checks its CRC
        except Exception as exc:  # noqa: BLE001 - any failure means "not as stored"
            return f"PNG chunk check failed: {_describe(exc)}"
    if source_format == "jpeg" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return "no JPEG end marker after the last scan"
    return ""


def _load(data: bytes, declared_size: tuple[int, int]) -> LoadedImage:
    """``load_image`` on bytes.

    Raises:
      ImageReadError: unreadable_image, see ``_decode``.
      Exception: anything else the decoder or the conversion raises.
    """
    repairs: list[tuple[str, str]] = []
    try:
        image = _decode(data)
        frames = getattr(image, "n_frames", 1)
    except (OSError, SyntaxError, ValueError) as exc:
        recovered = _recover_truncated_jpeg(data)
        if recovered is None:
            raise ImageReadError("unreadable_image", f"cannot decode: {exc}") from None
        image, detail = recovered
        frames = 1
        repairs.append(("recovered_truncated", detail))
    source_format = (image.format or "").lower()
    image, repair = _orient(image, declared_size)
    if repair:
        repairs.append(repair)
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
    if not repairs:
        damage = _stream_damage(data, source_format)
        if damage:
            repairs.append(("reencoded_damaged", damage))
    encoded = data if not repairs else _encode(image, fmt)
    width, height = image.size
    return LoadedImage(encoded, fmt, width, height, tuple(repairs))
