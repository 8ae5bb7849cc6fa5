"""Untrusted input: bytes, paths and strings become validated images, videos and texts, or
an InvalidInput error saying why not."""

from mmq.media.images import EncodedJpeg, Picture, as_image, decode_image, read_image_bytes
from mmq.media.paths import confined
from mmq.media.texts import clean_text

__all__ = [
    "EncodedJpeg",
    "Picture",
    "as_image",
    "clean_text",
    "confined",
    "decode_image",
    "read_image_bytes",
]
