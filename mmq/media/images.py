"""Images: read with size limits, decode fully, and hand back plain RGB."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from PIL import Image, ImageOps, UnidentifiedImageError

from mmq.errors import InvalidInput

# Formats we decode. Anything else (SVG, PDF, PSD, ...) is refused rather than guessed at.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})


def read_image_bytes(path: str | Path, *, max_bytes: int) -> bytes:
    """Read a file, refusing missing, non-regular or oversized files before reading them."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no such image file: {p}")
    size = p.stat().st_size
    if size > max_bytes:
        raise InvalidInput(f"{p.name} is {size} bytes, the limit is {max_bytes}")
    return p.read_bytes()


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG whose header passed the checks, left encoded for an encoder that decodes on
    its own device (nvJPEG on a GPU): the CPU never touches its pixels."""

    data: bytes
    size: tuple[int, int]  # (width, height) from the header

    def decode(self) -> Image.Image:
        """Decoded on the CPU after all (InvalidInput if it is corrupt)."""
        width, height = self.size
        return decode_image(self.data, max_bytes=len(self.data), max_pixels=width * height)


Picture = Image.Image | EncodedJpeg  # what encoders take: decoded, or a JPEG left encoded


def as_image(picture: Picture) -> Image.Image:
    return picture.decode() if isinstance(picture, EncodedJpeg) else picture


@overload
def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    min_side: int | None = None,
    keep_jpeg: Literal[False] = False,
) -> Image.Image: ...


@overload
def decode_image(
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int | None = None, keep_jpeg: bool
) -> Image.Image | EncodedJpeg: ...


def decode_image(
    data: bytes,
    *,
    max_bytes: int,
    max_pixels: int,
    min_side: int | None = None,
    keep_jpeg: bool = False,
) -> Image.Image | EncodedJpeg:
    """Decode untrusted bytes into an RGB image, or raise InvalidInput saying why not.

    The pixel count is checked from the header before any pixel is decoded, so a small file
    that claims 50,000 x 50,000 pixels costs nothing. Animated images give their first frame.
    `min_side`: a JPEG is decoded at the smallest of 1/8, 1/4, 1/2 or full scale that keeps
    both sides at least this long (libjpeg scales in the DCT, before the pixels exist).
    `keep_jpeg`: a whole JPEG comes back checked but still encoded (`EncodedJpeg`); one that
    is corrupt inside fails where it is decoded, which falls back to this function.
    """
    if not data:
        raise InvalidInput("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InvalidInput(f"image is {len(data)} bytes, the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            width, height = opened.size
            if width * height > max_pixels:
                raise InvalidInput(
                    f"image is {width}x{height} pixels, the limit is {max_pixels} pixels"
                )
            if keep_jpeg and opened.format == "JPEG" and _ends_whole(data):
                return EncodedJpeg(data, (width, height))
            if min_side and opened.format == "JPEG":
                opened.draft(None, (min_side, min_side))
            opened.load()  # decode now: truncation and corruption surface here, not later
            ImageOps.exif_transpose(opened, in_place=True)  # no copy when already upright
            return _to_rgb(opened)
    except InvalidInput:
        raise
    except UnidentifiedImageError:
        raise InvalidInput(
            "not a supported image (allowed: " + ", ".join(sorted(ALLOWED_FORMATS)) + ")"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own bomb guard fires inside Image.open, before our check above sees the size.
        raise InvalidInput(f"image exceeds the pixel limit: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"corrupt or truncated image: {exc}") from None


def _ends_whole(jpeg: bytes) -> bool:
    """Whether the JPEG ends with its end-of-image marker. nvJPEG decodes a truncated file
    without a word (grey where the data ran out), so one that lacks it is decoded here,
    where truncation fails the item."""
    return jpeg.rstrip(b"\0\r\n ")[-2:] == b"\xff\xd9"


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten palette, alpha, CMYK and 16-bit modes to 8-bit RGB (alpha over white)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of clipping everything to white.
        extrema = image.getextrema()
        high = max(1, int(extrema[1])) if isinstance(extrema, tuple) else 1  # type: ignore[arg-type]
        image = image.point(lambda v: v * (255.0 / high)).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")
