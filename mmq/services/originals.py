"""Originals kept by the ingest workers in the media store (`MMQ_KEEP_ORIGINALS`), so that
every item can be re-embedded and shown later.

- "bytes" (the default): an image or video that arrived as bytes is written to the store,
  and the store's file becomes the item's `uri` (it had none).
- "all": as "bytes", and a path ingest is copied too, its `uri` becoming the copy; a path
  already inside the store (an upload through the HTTP API) is its own original.
- "none": nothing is written; bytes ingests have no `uri`.

The file is written when the item is known to be good (decoded, encoded, fused), just
before the transaction that stores it: a database row never names a file that is not
there. The store names files by their content, so the same bytes twice are one file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from mmq.config import Settings
from mmq.errors import Unavailable
from mmq.media.store import MediaStore


@dataclass(frozen=True)
class Original:
    """What an item's original is written from: the bytes that arrived (or were read), or
    the file a video came from; and the suffix its decoded format gives."""

    source: bytes | Path
    suffix: str


def keeps(settings: Settings, path: Path | None) -> bool:
    """Whether an item read from `path` (None: it arrived as bytes) has its original kept."""
    if settings.keep_originals == "none":
        return False
    if path is None:
        return True
    if settings.keep_originals == "bytes":
        return False
    return not MediaStore(settings.resolved_media_dir).contains(path)


def keep(original: Original, settings: Settings) -> str:
    """Write the original to the media store; its path there, the item's new `uri`.
    Unavailable when the store cannot be written (a read-only mount, a full disk)."""
    store = MediaStore(settings.resolved_media_dir)
    try:
        if isinstance(original.source, bytes):
            stored = store.put(io.BytesIO(original.source), suffix=original.suffix)
        else:
            with open(original.source, "rb") as source:
                stored = store.put(source, suffix=original.suffix)
    except OSError as exc:
        raise Unavailable(
            f"could not keep the original in the media store {store.root}: "
            f"{exc.strerror or exc} (MMQ_MEDIA_DIR must be writable by ingest workers, "
            "or set MMQ_KEEP_ORIGINALS=none)"
        ) from None
    return str(stored.path)
