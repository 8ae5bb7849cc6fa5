"""Video decoding: sampling in time, seeking, downscaling, and every limit and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmq.errors import InvalidInput
from mmq.media.videos import (
    DecodeStats,
    VideoLimits,
    check_video_bytes,
    open_video,
    read_video_source,
    sample_frames,
)
from tests.support.videos import huge_frame_video, rotated_video, video_bytes, video_with_times

LIMITS = VideoLimits(
    max_bytes=10_000_000,
    max_duration_s=3600,
    max_decoded_frames=10_000,
    max_pixels=7680 * 4320,
    frame_short_side=32,
)


def sample(
    source: bytes | Path, fps: float = 1.0, limits: VideoLimits = LIMITS
) -> tuple[list[float], list[tuple[int, int]], DecodeStats]:
    stats = DecodeStats()
    with open_video(source, limits=limits) as (container, info):
        frames = list(sample_frames(container, info, fps=fps, limits=limits, stats=stats))
    return [f.time_s for f in frames], [f.image.size for f in frames], stats


@pytest.mark.parametrize(
    ("fmt", "codec"),
    [
        ("mp4", "libx264"),
        ("mov", "libx264"),
        ("webm", "libvpx-vp9"),
        ("avi", "mpeg4"),
        ("matroska", "libx264"),
    ],
)
def test_each_container_samples_one_frame_per_second(fmt: str, codec: str) -> None:
    times, sizes, stats = sample(video_bytes(seconds=4, fps=10, fmt=fmt, codec=codec))
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=0.01)
    assert stats.decoded_frames == 40
    assert all(size == (43, 32) for size in sizes)  # short side down to 32, aspect kept


def test_sampling_faster_than_the_video_uses_each_frame_once() -> None:
    times, _, _ = sample(video_bytes(seconds=1, fps=4), fps=10.0)
    assert times == pytest.approx([0.0, 0.25, 0.5, 0.75], abs=0.01)


def test_frames_are_never_upscaled() -> None:
    limits = VideoLimits(10_000_000, 3600, 10_000, 10**8, frame_short_side=480)
    _, sizes, _ = sample(video_bytes(seconds=1, size=(64, 48)), limits=limits)
    assert sizes == [(64, 48)]


def test_display_rotation_is_applied() -> None:
    limits = VideoLimits(10_000_000, 3600, 10_000, 10**8, frame_short_side=480)
    for degrees, white_half in ((90, "bottom"), (-90, "top")):
        stats = DecodeStats()
        with open_video(rotated_video(degrees), limits=limits) as (container, info):
            frame = next(sample_frames(container, info, fps=1, limits=limits, stats=stats))
        pixels = np.asarray(frame.image.convert("L"), dtype=float)
        assert pixels.shape == (64, 32)  # upright: portrait
        top, bottom = pixels[:32].mean(), pixels[32:].mean()
        assert (bottom > 200 and top < 50) if white_half == "bottom" else (top > 200), degrees


def test_sparse_sampling_seeks_instead_of_decoding_every_frame() -> None:
    # 60 s at 10 fps with a keyframe every second; one sample every 10 s.
    data = video_bytes(seconds=60, fps=10, gop=10)
    times, _, stats = sample(data, fps=0.1)
    assert times == pytest.approx([0, 10, 20, 30, 40, 50], abs=0.01)
    assert stats.seeks == 5, stats  # one per sample after the first
    # Near each sample at most one keyframe interval (10 frames), and the last 10 s in full:
    # no sample is left there to seek to, and the frames must reach the declared end (the
    # truncation check). 131 measured, of the video's 600 frames.
    assert stats.decoded_frames <= 6 * 10 + 100, stats
    assert stats.last_time_s == pytest.approx(59.9, abs=0.01)


def test_a_path_is_read_and_hashed(tmp_path: Path) -> None:
    data = video_bytes(seconds=2)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    source, digest = read_video_source(path, max_bytes=LIMITS.max_bytes)
    assert digest == check_video_bytes(data, max_bytes=LIMITS.max_bytes)
    assert sample(source)[0] == pytest.approx([0.0, 1.0], abs=0.01)


def refusal(source: bytes | Path, limits: VideoLimits = LIMITS) -> str:
    with pytest.raises(InvalidInput) as info:
        sample(source, limits=limits)
    return str(info.value)


def test_bad_videos_are_refused_with_a_reason(tmp_path: Path) -> None:
    good = video_bytes(seconds=3)
    faststart = video_bytes(seconds=3, faststart=True)
    text_file = tmp_path / "notes.mp4"
    text_file.write_text("this is a text file with an .mp4 name")
    playlist = tmp_path / "playlist.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/segment.ts\n")
    assert "not a readable video" in refusal(good[: len(good) // 2])  # index (moov) lost
    assert "truncated" in refusal(faststart[: len(faststart) // 2])  # index kept, data lost
    assert "not a readable video" in refusal(text_file)
    assert "not a readable video" in refusal(playlist)
    # Demuxers outside mp4/mkv/webm/avi are never used: FFmpeg alone would open a PNG as
    # a one-frame video, and an ffconcat script would read the files it names.
    png = io.BytesIO()
    Image.new("RGB", (32, 32)).save(png, format="PNG")
    assert "not a readable video" in refusal(png.getvalue())
    assert "not a readable video" in refusal(b"ffconcat version 1.0\nfile /etc/hostname\n")
    assert "not a readable video" in refusal(b"\x00" * 1000)
    with pytest.raises(InvalidInput, match="empty"):
        check_video_bytes(b"", max_bytes=100)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(InvalidInput, match="empty"):
        read_video_source(empty, max_bytes=100)
    with pytest.raises(InvalidInput, match="no such video file"):
        read_video_source(tmp_path / "missing.mp4", max_bytes=100)


def test_each_limit_refuses_with_its_own_message(tmp_path: Path) -> None:
    data = video_bytes(seconds=3)
    with pytest.raises(InvalidInput, match="the limit is 100"):
        check_video_bytes(data, max_bytes=100)
    big = tmp_path / "big.mp4"
    big.write_bytes(data)
    with pytest.raises(InvalidInput, match="the limit is 100"):
        read_video_source(big, max_bytes=100)
    # A 2 kB file declaring 14 hours, refused from its header before decoding.
    message = refusal(video_with_times([0.0, 1.0, 50_000.0]))
    assert "declares a duration of 50001 s, the limit is 3600 s" in message
    assert "limit is 33177600 pixels" in refusal(huge_frame_video())
    few_frames = VideoLimits(10_000_000, 3600, 12, 10**8, 32)
    assert "decoded more than 12 frames" in refusal(data, limits=few_frames)
    short = VideoLimits(10_000_000, 2.0, 10_000, 10**8, 32)
    assert "declares a duration of 3 s, the limit is 2 s" in refusal(data, limits=short)


def test_timestamps_past_the_limit_without_a_declared_duration_are_refused() -> None:
    # A live recording declares no duration: the frames' own times decide.
    data = video_with_times([0.0, 1.0, 5000.0], fmt="matroska", live=True)
    assert refusal(data) == "video runs past the 3600 s limit"
    times, _, _ = sample(video_with_times([0.0, 1.0, 2.0], fmt="matroska", live=True))
    assert times == pytest.approx([0.0, 1.0, 2.0], abs=0.01)
