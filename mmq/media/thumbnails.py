"""Small JPEG thumbnails of stored images and of video frames, cached on disk.

A thumbnail is named by what it shows (the file's real path, size and modification time,
the time in the video, the size asked for), so a second request for it decodes nothing,
and a file replaced in place gets a new one.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from mmq.config import Settings
from mmq.errors import BadRequest, InvalidInput, NotFound
from mmq.media.images import decode_image
from mmq.media.store import kind_of
from mmq.media.videos import VideoInfo, VideoLimits, _ffmpeg_reason, open_video

JPEG_QUALITY = 80
# Without a time, a video's thumbnail is this far in (past fades from black), or its middle.
DEFAULT_AT_S = 1.0


def _default(name: str) -> Any:
    # The Settings class's own defaults, without reading the environment.
    return Settings.model_fields[name].default


def thumbnail(
    path: Path,
    *,
    cache_dir: Path,
    at_s: float | None = None,
    side: int = 320,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> Path:
    """A JPEG (RGB, longest side at most `side`, never upscaled) of an image, or of a
    video's frame at `at_s` seconds (the first frame at or after it; the last frame when it
    is past the end; default 1 s in, or the middle of a shorter video), cached under
    `cache_dir`. Video or image is told by the file's suffix; an unknown one is tried as an
    image. `max_bytes` / `max_pixels` default to the Settings defaults for that kind
    (`max_image_*` or `max_video_*`). Unreadable media: InvalidInput; no such file: NotFound.
    """
    if side < 1:
        raise BadRequest(f"thumbnail side must be at least 1 pixel, got {side}")
    if at_s is not None and not (math.isfinite(at_s) and at_s >= 0):
        raise BadRequest(f"a time in a video must be 0 s or later, got {at_s}")
    real = Path(path).resolve()
    if not real.is_file():
        raise NotFound(f"no such media file: {path}")
    stat = real.stat()
    video = kind_of(real.suffix) == "video"
    at = round(at_s, 1) if video and at_s is not None else None
    key = repr((str(real), stat.st_size, stat.st_mtime_ns, at, side))
    cached = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()}.jpg"
    if cached.is_file():
        return cached
    if video:
        image = _video_frame(
            real,
            at_s=at,
            side=side,
            max_bytes=max_bytes or _default("max_video_bytes"),
            max_pixels=max_pixels or _default("max_video_pixels"),
        )
    else:
        image = _image(
            real,
            side=side,
            max_bytes=max_bytes or _default("max_image_bytes"),
            max_pixels=max_pixels or _default("max_image_pixels"),
        )
    _write_atomically(image, cached)
    return cached


def _image(path: Path, *, side: int, max_bytes: int, max_pixels: int) -> Image.Image:
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInput(f"{path.name} is {size} bytes, the limit is {max_bytes}")
    # min_side lets a JPEG decode at a fraction of its size when that still covers `side`.
    image = decode_image(
        path.read_bytes(), max_bytes=max_bytes, max_pixels=max_pixels, min_side=side
    )
    image.thumbnail((side, side), Image.Resampling.LANCZOS)  # shrinks only, keeps the ratio
    return image


def _video_frame(
    path: Path, *, at_s: float | None, side: int, max_bytes: int, max_pixels: int
) -> Image.Image:
    size = path.stat().st_size
    if size == 0:
        raise InvalidInput("video is empty (0 bytes)")
    if size > max_bytes:
        raise InvalidInput(f"{path.name} is {size} bytes, the limit is {max_bytes}")
    limits = VideoLimits(
        max_bytes=max_bytes,
        max_duration_s=_default("max_video_duration_s"),
        max_decoded_frames=_default("max_video_decoded_frames"),
        max_pixels=max_pixels,
        frame_short_side=side,
    )
    with open_video(path, limits=limits) as (container, info):
        return _frame_at(container, info, at_s=at_s, side=side, limits=limits)


def _frame_at(
    container: Any, info: VideoInfo, *, at_s: float | None, side: int, limits: VideoLimits
) -> Image.Image:
    """The first frame at or after `at_s`, reached by seeking to the keyframe before it:
    only that keyframe's group of pictures is decoded, never the whole video."""
    import av

    declared = info.declared_duration_s
    target = at_s if at_s is not None else min(DEFAULT_AT_S, (declared or 2 * DEFAULT_AT_S) / 2)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    time_base = stream.time_base
    origin = float(stream.start_time * time_base) if stream.start_time and time_base else 0.0
    if target > 0 and time_base is not None:
        try:
            container.seek(int((origin + target) / time_base), stream=stream, backward=True)
        except av.error.FFmpegError:
            pass  # not seekable (some AVI): decode from the start instead
    last = None
    decoded = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            if decoded > limits.max_decoded_frames:
                raise InvalidInput(
                    f"decoded more than {limits.max_decoded_frames} frames (the limit)"
                )
            if frame.width * frame.height > limits.max_pixels:
                raise InvalidInput(f"a frame is {frame.width}x{frame.height} pixels, over limit")
            last = frame
            if frame.time is None or frame.time - origin >= target - 1e-6:
                break
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"truncated or corrupt video (FFmpeg: {_ffmpeg_reason(exc)})") from None
    if last is None:
        raise InvalidInput("truncated or corrupt video: no frame could be decoded")
    return _fitted(last, side)


def _fitted(frame: Any, side: int) -> Image.Image:
    width, height = frame.width, frame.height
    scale = min(1.0, side / max(1, width, height))
    # swscale resizes and converts to RGB in one pass; the full-size RGB frame never exists.
    image = frame.to_image(width=max(1, round(width * scale)), height=max(1, round(height * scale)))
    image = image if image.mode == "RGB" else image.convert("RGB")
    # Portrait phone video: landscape frames plus a display rotation (see media/videos.py).
    rotation = round(frame.rotation or 0) % 360
    return image.rotate(rotation, expand=True) if rotation else image


def _write_atomically(image: Image.Image, target: Path) -> None:
    """Write the JPEG under a temporary name and rename it: readers see all of it or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".thumb-", delete=False) as tmp:
        temp_path = Path(tmp.name)
        try:
            image.save(tmp, "JPEG", quality=JPEG_QUALITY)
        except BaseException:
            tmp.close()
            temp_path.unlink(missing_ok=True)
            raise
    try:
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
