"""Where MMQ_VIDEO_CUT_DISTANCE comes from: cosine distances between consecutive sampled
frames, within shots and across cuts, with the model a worker would use.

    python -m benchmarks.video_cut_distances [--model lite] [--fps 1.0]

The assembled photo video has known cuts; the real clips (../shared/data/videos, when
present) are single shots, so every distance in them is a within-shot one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from mmq.config import get_settings
from mmq.encoders import Encoder, get_encoder
from mmq.media.videos import DecodeStats, open_video, sample_frames
from mmq.samples import write_demo_video, write_photos
from mmq.segmentation import frame_distances
from mmq.services.video import video_limits
from tests.support.data import VIDEO_CLIPS as CLIPS


def distances(path: Path, encoder: Encoder, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(time of the later sample of each pair, distance) for consecutive samples."""
    limits = video_limits(get_settings())
    with open_video(path, limits=limits) as (container, info):
        frames = list(sample_frames(container, info, fps=fps, limits=limits, stats=DecodeStats()))
    vectors = encoder.encode_images([f.image for f in frames])
    return np.array([f.time_s for f in frames[1:]]), frame_distances(vectors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite")
    parser.add_argument("--fps", type=float, default=1.0)
    args = parser.parse_args()
    settings = get_settings()
    encoder = get_encoder(args.model, "cpu", cache_dir=settings.state_dir / "cache").load()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "photos.mp4"
        shots = write_demo_video(video, write_photos(Path(tmp) / "photos"))
        times, d = distances(video, encoder, args.fps)
    # A pair straddles a cut when a shot starts between its two sample times.
    cuts = np.array([s.start_s for s in shots[1:]])
    across = np.array([any(t - 1 / args.fps < c <= t for c in cuts) for t in times])
    print(f"assembled video: across cuts {[round(float(x), 3) for x in d[across]]}")
    print(f"assembled video: within shots, max {d[~across].max():.3f}")
    within = [d[~across]]
    for clip in sorted(CLIPS.glob("*.mp4")) if CLIPS.is_dir() else []:
        _, dc = distances(clip, encoder, args.fps)
        within.append(dc)
        print(f"{clip.name}: within the shot, max {dc.max():.3f}")
    print(
        f"smallest distance across a cut {d[across].min():.3f}; "
        f"largest within a shot {np.concatenate(within).max():.3f}; "
        f"cut distance in use: {settings.video_cut_distance or encoder.cut_distance}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
