"""The sample media the demo, the tests and the benchmarks share: the photos that ship with
scikit-image, each with a short caption, and a video assembled from five of them with cuts
at known times."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# skimage.data photo → short caption. (`cat()` is chelsea again, so it is left out.)
PHOTOS = {
    "astronaut": "an astronaut in a spacesuit",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a tabby cat",
    "rocket": "a rocket on the launch pad",
    "horse": "the silhouette of a horse",
    "camera": "a man with a camera on a tripod",
    "clock": "a clock on the wall",
    "coins": "old coins",
    "moon": "the surface of the moon",
    "page": "a page of printed text",
    "hubble_deep_field": "galaxies in deep space",
    "brick": "a brick wall",
    "grass": "grass",
    "immunohistochemistry": "cells under a microscope",
}


def photo(name: str) -> Image.Image:
    """One of the bundled photos, as scikit-image ships it (RGB or greyscale)."""
    import skimage.data
    from PIL import Image

    return Image.fromarray(getattr(skimage.data, name)())


def write_photos(folder: Path) -> dict[str, Path]:
    """Save the bundled photos as PNG files, as a user's own images would be, with their
    captions beside them in `captions.csv` (what `mmq ingest --captions` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in PHOTOS:
        path = folder / f"{name}.png"
        if not path.exists():
            photo(name).save(path)
        paths[name] = path
    with open(folder / "captions.csv", "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        rows.writerow(["image", "caption", "source"])
        rows.writerows([f"{name}.png", caption, "scikit-image"] for name, caption in PHOTOS.items())
    return paths


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
