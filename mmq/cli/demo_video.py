"""A video assembled from the bundled photos, with known cuts: the demo's and the tests'."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# (photo, seconds on screen), in order. Uneven lengths put the cuts off the sampling grid.
SHOTS: tuple[tuple[str, float], ...] = (
    ("rocket", 3.5),
    ("coffee", 4.2),
    ("chelsea", 5.0),
    ("astronaut", 3.8),
    ("horse", 4.5),
)
FPS = 10
SIZE = (480, 360)


@dataclass(frozen=True)
class Shot:
    photo: str
    start_s: float
    end_s: float


def shot_times(shots: tuple[tuple[str, float], ...] = SHOTS) -> list[Shot]:
    """Where each photo starts and ends in the assembled video (whole frames at FPS)."""
    out, frame = [], 0
    for photo, seconds in shots:
        frames = round(seconds * FPS)
        out.append(Shot(photo, frame / FPS, (frame + frames) / FPS))
        frame += frames
    return out


def write_demo_video(
    path: Path, photos: dict[str, Path], shots: tuple[tuple[str, float], ...] = SHOTS
) -> list[Shot]:
    """Write an H.264 mp4 showing each photo for its seconds, letterboxed; returns the
    true shot times."""
    import av
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    times = shot_times(shots)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for shot in times:
            canvas = Image.new("RGB", SIZE)
            photo = Image.open(photos[shot.photo]).convert("RGB")
            photo.thumbnail(SIZE)
            canvas.paste(photo, ((SIZE[0] - photo.width) // 2, (SIZE[1] - photo.height) // 2))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            for _ in range(round((shot.end_s - shot.start_s) * FPS)):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return times
