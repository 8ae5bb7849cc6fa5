"""`mmq demo`: servers, migrations, two workers, the scikit-image photos and a video made of
them; every kind of query, including text→video moments."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmq.cli.commands import print_hits
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import Settings, get_settings
from mmq.samples import PHOTOS, Shot, write_demo_video, write_photos
from mmq.schemas import IngestItem, hit_json


@dataclass(frozen=True)
class DemoSet:
    """The demo's media, written under the state folder, and its items."""

    photos: dict[str, Path]
    video: Path
    shots: list[Shot]
    items: list[IngestItem]

    @property
    def roots(self) -> list[Path]:
        """Where the workers must be allowed to read."""
        return [next(iter(self.photos.values())).parent, self.video.parent]


def demo_set(settings: Settings) -> DemoSet:
    """The scikit-image photos (external id: the photo's name), their captions as texts,
    and a video made of the photos."""
    photos = write_photos(settings.state_dir / "demo-photos")
    video = settings.state_dir / "demo-video" / "photos.mp4"
    shots = write_demo_video(video, photos)
    items = [
        IngestItem(image_path=str(path), external_id=name, metadata={"caption": PHOTOS[name]})
        for name, path in photos.items()
    ] + [
        IngestItem(text=caption, external_id=f"caption:{name}") for name, caption in PHOTOS.items()
    ]
    items.append(IngestItem(video_path=str(video), external_id="photos.mp4"))
    return DemoSet(photos, video, shots, items)


def run_demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    t0 = time.monotonic()
    urls = ready_servers(settings)
    print(f"servers ready and schema migrated in {time.monotonic() - t0:.1f}s")
    client = Client(settings, urls)
    demo = demo_set(settings)
    photos, shots = demo.photos, demo.shots
    cat = next(shot for shot in shots if shot.photo == "chelsea")
    with running_workers(client.app, log_dir=settings.state_dir / "logs", roots=demo.roots):
        print(f"workers up (ingest, search) after {time.monotonic() - t0:.1f}s")
        t1 = time.monotonic()
        result = client.ingest(demo.items, collection=args.collection).result(timeout=600)
        print(
            f"\ningested {result.stored} items ({len(photos)} photos, {len(PHOTOS)} captions, "
            f"1 video of {shots[-1].end_s:.0f}s) in {time.monotonic() - t1:.1f}s; "
            f"{result.failed} failed"
        )
        print(
            "the video shows, in order: "
            + ", ".join(f"{s.photo} {s.start_s:.1f}-{s.end_s:.1f}s" for s in shots)
        )
        for err in (i for i in result.items if i.status == "failed"):
            print(f"  failed: {err.source}: {err.error}")
        queries: list[tuple[str, dict[str, Any]]] = [
            ("text → image: 'a cat'", dict(text="a cat", targets=["image"])),
            ("text → image: 'a cup of coffee'", dict(text="a cup of coffee", targets=["image"])),
            ("image → image: the rocket photo", dict(image=photos["rocket"], targets=["image"])),
            ("image → text: the coffee photo", dict(image=photos["coffee"], targets=["text"])),
            (
                "composed: the cat photo + 'a cup of coffee' (image 0.5, text 0.5)",
                dict(
                    image=photos["chelsea"],
                    text="a cup of coffee",
                    targets=["image"],
                    weights={"image": 0.5, "text": 0.5},
                ),
            ),
            (
                f"text → video: 'a cat' (the cat is on screen {cat.start_s:.1f}-{cat.end_s:.1f}s)",
                dict(text="a cat", targets=["video"]),
            ),
            ("image → video: the cat photo", dict(image=photos["chelsea"], targets=["video"])),
            (
                "text → anything: 'a cat' over images, captions and the video",
                dict(text="a cat"),
            ),
            ("Chinese text → image: '猫' (cat)", dict(text="猫", targets=["image"])),
            (
                "Chinese question → video: '视频里的猫在哪里？' (where is the cat in the video?)",
                dict(text="视频里的猫在哪里？", targets=["video"]),
            ),
        ]
        for title, query in queries:
            found = client.search(collection=args.collection, k=3, **query).result(timeout=60)
            print(f"\n{title}  [{found.timings_ms['encode'] + found.timings_ms['ann']:.0f} ms]")
            if found.encoded_text:
                print(f"   (read by {found.model} as: {found.encoded_text})")
            print_hits([hit_json(h) for h in found.hits])
    print(f"\ndemo finished in {time.monotonic() - t0:.1f}s; workers and servers stopped")
    return 0
