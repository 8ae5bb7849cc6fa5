"""Uploaded media on disk, stored by content: `root/<sha[:2]>/<sha><suffix>`.

The HTTP API writes uploads here and enqueues their paths; workers read them there (the
media directory is always one of their ingest roots). Bytes never travel through Redis.
Files are written whole to a temporary name and renamed into place, so a reader never
sees half a file, and the same content uploaded twice is one file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, Literal

from mmq.errors import BadRequest

_CHUNK = 1 << 20
# Workers may run as another user (compose): stored media is readable by group and others.
_FILE_MODE = 0o644
_DIR_MODE = 0o755
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v"})
_BY_CONTENT_TYPE = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/x-ms-bmp": ".bmp",
    "image/tiff": ".tiff",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/matroska": ".mkv",
    "video/quicktime": ".mov",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/msvideo": ".avi",
    "video/x-m4v": ".m4v",
}


@dataclass(frozen=True)
class StoredMedia:
    path: Path  # absolute, inside the store's root
    sha256: str  # hex digest of the content
    size: int  # bytes


class MediaStore:
    """A content-addressed directory of uploads (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        # Resolved once, so stored paths and `contains` agree with the workers' `confined`.
        self.root = Path(root).expanduser().resolve()

    def put(self, source: BinaryIO, *, suffix: str) -> StoredMedia:
        """Copy `source` to `root/<sha[:2]>/<sha><suffix>` and say where it went.

        `suffix` is lowercased and must be `.` and 1 to 10 letters or digits (BadRequest
        otherwise). The same content stored again (with the same suffix) gives the same
        path, and the file already there is left untouched."""
        suffix = _checked_suffix(suffix)
        _make_dir(self.root)
        digest = hashlib.sha256()
        size = 0
        # A temporary file in the root itself: same filesystem, so the rename is atomic.
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".upload-", delete=False) as tmp:
            temp_path = Path(tmp.name)
            try:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())  # on disk before a worker is told to read it
            except BaseException:
                temp_path.unlink(missing_ok=True)
                raise
        sha = digest.hexdigest()
        target = self.root / sha[:2] / f"{sha}{suffix}"
        try:
            if not target.is_file():  # else the same bytes are there already
                _make_dir(target.parent)
                os.chmod(temp_path, _FILE_MODE)
                os.replace(temp_path, target)
                return StoredMedia(target, sha, size)
        except BaseException:
            temp_path.unlink(missing_ok=True)
            raise
        temp_path.unlink()
        return StoredMedia(target, sha, size)

    @property
    def uri_prefix(self) -> str:
        """What the uri of every file in the store begins with."""
        return str(self.root) + os.sep

    def contains(self, path: Path) -> bool:
        """Whether `path`, symlinks and `..` resolved, lies inside the root (not the root
        itself): only such paths may be served."""
        try:
            real = Path(path).resolve()
        except (OSError, ValueError):  # a NUL byte, a symlink loop
            return False
        return real != self.root and real.is_relative_to(self.root)


def suffix_for(filename: str | None, content_type: str | None) -> str:
    """The suffix to store an upload under: its filename's extension when that is a known
    image or video one, else the one its content type implies, else `.bin`."""
    if filename:
        # Browsers on Windows may send a full path: its last part, either separator.
        name = PureWindowsPath(PurePosixPath(filename).name).name
        extension = PurePosixPath(name).suffix.lower()
        if extension in IMAGE_SUFFIXES or extension in VIDEO_SUFFIXES:
            return extension
    if content_type:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime in _BY_CONTENT_TYPE:
            return _BY_CONTENT_TYPE[mime]
    return ".bin"


def kind_of(suffix: str) -> Literal["image", "video"] | None:
    """Which item field a stored file goes to (`image_path` or `video_path`) by its suffix;
    None when the suffix is neither a known image nor a known video one."""
    suffix = suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _checked_suffix(suffix: str) -> str:
    lowered = suffix.lower()
    if not _SUFFIX.fullmatch(lowered):
        raise BadRequest(
            f"file suffix {suffix[:40]!r} is not '.' followed by 1 to 10 letters or digits"
        )
    return lowered


def _make_dir(path: Path) -> None:
    """Create a directory readable by all (umask notwithstanding); leave an existing one be."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path, _DIR_MODE)
    except PermissionError:  # created meanwhile by another user: theirs to set
        pass
