"""Small videos written with PyAV for the tests: good ones, and each kind of bad one."""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def video_bytes(
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    fmt: str = "mp4",
    codec: str = "libx264",
    gop: int | None = None,
    faststart: bool = False,
) -> bytes:
    """A video whose grey level changes every frame (so every frame differs). `faststart`
    puts the mp4 index before the data, as web-ready files have it."""
    with tempfile.TemporaryDirectory() as tmp:  # faststart rewrites the file: needs a path
        path = f"{tmp}/video"
        _write(path, seconds, fps, size, fmt, codec, gop, faststart)
        return Path(path).read_bytes()


def _write(
    path: str,
    seconds: float,
    fps: int,
    size: tuple[int, int],
    fmt: str,
    codec: str,
    gop: int | None,
    faststart: bool,
) -> None:
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(path, "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream), f"{codec} is not a video codec"
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        for i in range(round(seconds * fps)):
            pixels = np.full((size[1], size[0], 3), (i * 7) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def rotated_video(degrees: int) -> bytes:
    """64x32 frames, left half white, with a display rotation (as phones write portrait)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height = 64, 32
        stream.pix_fmt = "yuv420p"
        stream.set_display_rotation(degrees)
        pixels = np.zeros((32, 64, 3), np.uint8)
        pixels[:, :32] = 255
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def video_with_times(times_s: list[float], *, fmt: str = "mp4", live: bool = False) -> bytes:
    """One tiny frame at each given time: a small file can declare a long duration.
    `live` Matroska, as a stream recorder writes it, declares no duration at all."""
    buf = io.BytesIO()
    tb = Fraction(1, 1000)
    with av.open(buf, "w", format=fmt, options={"live": "1"} if live else {}) as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = tb
        stream.time_base = tb
        for i, t in enumerate(times_s):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 60 % 256, np.uint8))
            frame.pts, frame.time_base = round(t * 1000), tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def huge_frame_video(width: int = 8200, height: int = 4100) -> bytes:
    """One black frame larger than 8K UHD: small on disk, 33.6 Mpx decoded."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for packet in stream.encode(av.VideoFrame(width, height, "yuv420p")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
