"""The suffix an original is kept under in the media store: from the format its content
decoded as, never from a name the producer gave (bytes come without one)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from mmq.media.images import ALLOWED_FORMATS

# PIL's format names → the suffix browsers and the API's media endpoint know them by.
_IMAGE_SUFFIXES = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
}
# Matroska holding only web codecs is a WebM file.
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1"})


def image_suffix(data: bytes) -> str:
    """The suffix of an image that has decoded (`decode_image`): its format's, read from
    the header alone; `.bin` if the header says nothing we know."""
    try:
        with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as opened:
            return _IMAGE_SUFFIXES.get(opened.format or "", ".bin")
    except Exception:  # decoded once already: a suffix is not worth failing the item for
        return ".bin"


def video_suffix(container: Any, codec: str) -> str:
    """The suffix of a video open in PyAV (`open_video`): its container format's, by the
    demuxer FFmpeg chose (and, within a family, the file's brand or its video codec);
    `.bin` for any other container."""
    demuxers = set(str(container.format.name).split(","))
    if "mp4" in demuxers:  # FFmpeg's one demuxer for mov, mp4, m4v, 3gp
        brand = str(container.metadata.get("major_brand", "")).strip()
        return ".mov" if brand == "qt" else ".mp4"
    if "matroska" in demuxers:
        return ".webm" if codec in _WEBM_CODECS else ".mkv"
    if "avi" in demuxers:
        return ".avi"
    return ".bin"
