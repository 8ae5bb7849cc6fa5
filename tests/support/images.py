"""Images built in memory for tests: real encodings, hostile headers, unusual modes."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Incompressible pixels, so a truncated file really lacks image data."""
    rng = np.random.default_rng(0)
    channels = len(mode)
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (8-bit RGB) that claims any size: about 60 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose logical screen claims any size, holding one 1x1 frame."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02D\x01\x00"
    return screen + frame + b";"


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", quality=95)


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    image.putpixel((0, 0), 1)  # one blue pixel; index 0 (red) is transparent
    return encode(image, "PNG", transparency=0)


def rgba_png() -> bytes:
    image = Image.new("RGBA", (4, 2), (255, 0, 0, 0))  # fully transparent red
    image.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    return encode(image, "PNG")


def la_png() -> bytes:
    """4x2 greyscale with alpha: one opaque black pixel at (0, 0), the rest transparent."""
    image = Image.new("LA", (4, 2), (0, 0))
    image.putpixel((0, 0), (0, 255))
    return encode(image, "PNG")


def solid(colour: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    """One colour, encoded in `fmt`: a valid image of any size, cheap to make."""
    return encode(Image.new("RGB", size, colour), fmt)


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG whose EXIF orientation (6) says: rotate 90 degrees clockwise to show."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (40, 20), (200, 30, 30)), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (32, 16), 40000), "PNG")


def animated(fmt: str) -> bytes:
    """Two 16x8 frames, red then blue, as an animated GIF or WebP."""
    frames = [Image.new("RGB", (16, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def jpeg_with_zip_appended() -> bytes:
    """A valid JPEG followed by a ZIP archive: both readers accept the same bytes."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.sh", "echo pwned\n")
    return encode(noise(32, 32), "JPEG") + archive.getvalue()
