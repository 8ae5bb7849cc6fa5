"""Videos: open untrusted files or bytes with PyAV under limits, and sample frames in time.

Only local data is ever read: a path is opened by Python and handed to FFmpeg as a file
object, and FFmpeg may open nothing else (`protocol_whitelist`) and use only the demuxers
of the containers we accept (`format_whitelist`), so a playlist or a reference to a URL
inside a file goes nowhere.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from mmq.errors import InvalidInput

# FFmpeg demuxer names: mp4/mov, mkv/webm, avi. Nothing else is demuxed.
ALLOWED_DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi"
_OPEN_OPTIONS = {"protocol_whitelist": "file,pipe", "format_whitelist": ALLOWED_DEMUXERS}
# When the next sample is this far ahead, seek to it instead of decoding every frame between.
SEEK_AHEAD_S = 4.0
# A video whose frames stop this early before its declared end is truncated (or lying).
_TRUNCATION_SLACK_S = 1.0


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int
    max_duration_s: float
    max_decoded_frames: int
    max_pixels: int
    frame_short_side: int  # frames are downscaled (never upscaled) to this before encoding


@dataclass(frozen=True)
class VideoInfo:
    container: str
    codec: str
    width: int
    height: int
    declared_duration_s: float | None
    fps: float | None


@dataclass(frozen=True)
class SampledFrame:
    time_s: float  # from the first frame of the video stream
    image: Image.Image


@dataclass
class DecodeStats:
    """Filled in while frames are sampled: what decoding actually cost and covered."""

    decoded_frames: int = 0
    seeks: int = 0
    last_time_s: float = 0.0


def read_video_source(path: str | Path, *, max_bytes: int) -> tuple[Path, str]:
    """Check a video file before opening it; returns (path, sha256 of its content)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"no such video file: {p}")
    size = p.stat().st_size
    if size == 0:
        raise InvalidInput("video is empty (0 bytes)")
    if size > max_bytes:
        raise InvalidInput(f"{p.name} is {size} bytes, the limit is {max_bytes}")
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return p, digest.hexdigest()


def check_video_bytes(data: bytes, *, max_bytes: int) -> str:
    """Check video bytes before opening them; returns their sha256."""
    if not data:
        raise InvalidInput("video is empty (0 bytes)")
    if len(data) > max_bytes:
        raise InvalidInput(f"video is {len(data)} bytes, the limit is {max_bytes}")
    return hashlib.sha256(data).hexdigest()


@contextmanager
def open_video(source: Path | bytes, *, limits: VideoLimits) -> Iterator[tuple[Any, VideoInfo]]:
    """Open a container and check its header against the limits: (container, info)."""
    import av

    stream_file: BinaryIO = (
        io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    )
    try:
        try:
            container = av.open(stream_file, mode="r", options=_OPEN_OPTIONS)
        except av.error.FFmpegError as exc:
            raise InvalidInput(
                "not a readable video: not mp4, mov, webm, mkv or avi, or corrupt or truncated "
                f"(FFmpeg: {_ffmpeg_reason(exc)})"
            ) from None
        with container:
            yield container, _check_header(container, limits)
    finally:
        stream_file.close()


def _check_header(container: Any, limits: VideoLimits) -> VideoInfo:
    if not container.streams.video:
        raise InvalidInput("the file has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width * height > limits.max_pixels:
        raise InvalidInput(
            f"video is {width}x{height} pixels, the limit is {limits.max_pixels} pixels per frame"
        )
    declared = _declared_duration(container, stream)
    if declared is not None and declared > limits.max_duration_s:
        raise InvalidInput(
            f"video declares a duration of {declared:.0f} s, the limit is "
            f"{limits.max_duration_s:.0f} s"
        )
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        container=str(container.format.name),
        codec=str(ctx.name),
        width=width,
        height=height,
        declared_duration_s=declared,
        fps=float(rate) if rate else None,
    )


def _declared_duration(container: Any, stream: Any) -> float | None:
    # The video stream's own duration when the header has one (audio may run longer).
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


def sample_frames(
    container: Any, info: VideoInfo, *, fps: float, limits: VideoLimits, stats: DecodeStats
) -> Iterator[SampledFrame]:
    """Yield one downscaled RGB frame per 1/fps seconds: the first frame at or after each
    sample time. Far-apart samples are reached by seeking, so a sparse sampling of a long
    video decodes only the frames near each sample, not every frame."""
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    interval = 1.0 / fps
    time_base = stream.time_base
    origin: float | None = None  # time of the first frame: sample times count from there
    next_sample = 0.0
    seek_target: float | None = None
    try:
        while True:
            reached_end = True
            for frame in container.decode(stream):
                stats.decoded_frames += 1
                if stats.decoded_frames > limits.max_decoded_frames:
                    raise InvalidInput(
                        f"decoded more than {limits.max_decoded_frames} frames (the limit)"
                    )
                raw_t = _frame_time(frame, stats.decoded_frames, info)
                if origin is None:
                    origin = raw_t
                t = raw_t - origin
                if t > limits.max_duration_s:
                    raise InvalidInput(f"video runs past the {limits.max_duration_s:.0f} s limit")
                if frame.width * frame.height > limits.max_pixels:
                    raise InvalidInput(
                        f"a frame is {frame.width}x{frame.height} pixels, over limit"
                    )
                stats.last_time_s = max(stats.last_time_s, t)
                if seek_target is not None and t < seek_target - 1e-6:
                    continue  # decoding forward from the keyframe before the seek target
                seek_target = None
                if t + 1e-6 < next_sample:
                    if _worth_seeking(t, next_sample, info) and time_base is not None:
                        container.seek(
                            int((next_sample + origin) / time_base),
                            stream=stream,
                            backward=True,
                        )
                        stats.seeks += 1
                        seek_target = next_sample
                        reached_end = False
                        break
                    continue
                yield SampledFrame(t, _downscaled(frame, limits.frame_short_side))
                # Several sample times can fall before the next frame (a slow video):
                # each frame is used once.
                next_sample = (math.floor(t / interval + 1e-6) + 1) * interval
            if reached_end:
                break
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"truncated or corrupt video (FFmpeg: {_ffmpeg_reason(exc)})") from None
    if stats.decoded_frames == 0:
        raise InvalidInput("truncated or corrupt video: no frame could be decoded")
    declared = info.declared_duration_s
    if declared is not None and stats.last_time_s + _TRUNCATION_SLACK_S < 0.9 * declared:
        raise InvalidInput(
            f"truncated or corrupt video: frames stop at {stats.last_time_s:.1f} s "
            f"of a declared {declared:.1f} s"
        )


def _worth_seeking(t: float, target: float, info: VideoInfo) -> bool:
    # Past the declared end a seek would land on the last keyframe and decode it all again.
    declared = info.declared_duration_s
    return target - t > SEEK_AHEAD_S and (declared is None or target < declared)


def _frame_time(frame: Any, index: int, info: VideoInfo) -> float:
    if frame.time is not None:
        return float(frame.time)
    # No timestamps (rare, e.g. some raw AVI): count frames at the nominal rate.
    return (index - 1) / (info.fps or 25.0)


def _downscaled(frame: Any, short_side: int) -> Image.Image:
    width, height = frame.width, frame.height
    scale = min(1.0, short_side / max(1, min(width, height)))
    # swscale resizes and converts to RGB in one pass; the full-size RGB frame never exists.
    image = frame.to_image(width=max(1, round(width * scale)), height=max(1, round(height * scale)))
    image = image if image.mode == "RGB" else image.convert("RGB")
    # Phones store portrait video as landscape frames plus a display rotation: show it upright
    # (the counter-clockwise angle of the display matrix, as PIL's rotate takes it).
    rotation = round(frame.rotation or 0) % 360
    return image.rotate(rotation, expand=True) if rotation else image


def _ffmpeg_reason(exc: Exception) -> str:
    # FFmpeg errors name the file object's repr; keep only the reason.
    return str(getattr(exc, "strerror", None) or exc).split(": '<")[0]
