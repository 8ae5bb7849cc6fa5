"""Video ingest speed through the queue: seconds of video indexed per second of wall time.

    python -m benchmarks.video_ingest [--repeat 8] [--json]     (or: make bench-video)

Measures, with an ingest worker whose model is already loaded: (1) the real clips of
../shared/data/videos as separate items, (2) one long video made of those clips concatenated
`--repeat` times and re-encoded as 480p H.264 at 30 fps. Without the dev data, the demo's
photo video stands in for the clips. Wall time runs from enqueue to stored rows.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from fractions import Fraction
from pathlib import Path

from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.samples import SHOTS, write_demo_video, write_photos
from mmq.schemas import IngestItem, IngestResult
from tests.support.data import VIDEO_CLIPS as CLIPS

SIZE, FPS = (854, 480), 30


def concatenate(clips: list[Path], out: Path, repeat: int) -> None:
    """Re-encode the clips, one after another, `repeat` times, into one mp4."""
    import av

    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast"}
        n = 0
        for _ in range(repeat):
            for clip in clips:
                with av.open(str(clip)) as source:
                    for frame in source.decode(video=0):
                        scaled = frame.reformat(width=SIZE[0], height=SIZE[1], format="yuv420p")
                        scaled.pts, scaled.time_base = n, Fraction(1, FPS)
                        n += 1
                        for packet in stream.encode(scaled):
                            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def measure(client: Client, videos: list[Path]) -> dict[str, float]:
    items = [IngestItem(video_path=str(v), external_id=v.name) for v in videos]
    t0 = time.monotonic()
    result = client.ingest(items, collection=f"bench-video-{uuid.uuid4().hex[:8]}").result(3600)
    wall = time.monotonic() - t0
    assert isinstance(result, IngestResult)
    if result.failed:
        raise SystemExit(f"ingest failed: {[i.error for i in result.items if i.error]}")
    seconds = sum(i.duration_s or 0.0 for i in result.items)
    return {
        "videos": len(videos),
        "video_s": round(seconds, 1),
        "wall_s": round(wall, 2),
        "video_s_per_s": round(seconds / wall, 1),
        "segments": sum(i.segments or 0 for i in result.items),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=8, help="copies of the clips in the long one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings = get_settings()
    urls = ready_servers(settings)
    work = settings.state_dir / "bench-video"
    work.mkdir(parents=True, exist_ok=True)
    if CLIPS.is_dir():
        clips = sorted(CLIPS.glob("*.mp4"))
    else:
        clips = [work / "photos.mp4"]
        write_demo_video(clips[0], write_photos(work / "photos"), SHOTS)
    long_video = work / f"long-{args.repeat}.mp4"
    if not long_video.exists():
        concatenate(clips, long_video, args.repeat)
    client = Client(settings, urls)
    with running_workers(
        client.app, log_dir=settings.state_dir / "logs", roots=[work, *{c.parent for c in clips}]
    ):
        measure(client, clips[:1])  # the worker loads its model on the first task
        results = {"clips": measure(client, clips), "long": measure(client, [long_video])}
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'':6s} {'videos':>6s} {'video s':>8s} {'wall s':>7s} {'video s/s':>9s}")
        for name, r in results.items():
            print(
                f"{name:6s} {r['videos']:6d} {r['video_s']:8.1f} {r['wall_s']:7.2f} "
                f"{r['video_s_per_s']:9.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
