"""Where the development data lives (../shared/data beside the repository; see its README),
and real photos as ingest items. Code that uses the data skips, or falls back to the bundled
photos, when it is absent: a user's clone does not have it."""

from __future__ import annotations

from pathlib import Path

from mmq.samples import write_photos
from mmq.schemas import IngestItem

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
FLICKR = SHARED_DATA / "flickr8k-dev"  # images/*.jpg, captions.csv, captions-zh.csv
FLICKR_IMAGES = FLICKR / "images"
IMAGENET = SHARED_DATA / "imagenet-sample"  # *.jpg and labels.csv
VIDEO_CLIPS = SHARED_DATA / "videos"  # 4 short real clips, named for what they show


def photo_items(n: int, work: Path, folder: Path = FLICKR_IMAGES) -> tuple[list[IngestItem], str]:
    """`n` real photos: the JPEGs in `folder` (flickr8k-dev) when there are any, else the
    bundled photos; repeated with distinct external ids where there are fewer than `n` (then
    each file is decoded and encoded again, as a new item)."""
    photos = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    source = "flickr8k-dev" if folder == FLICKR_IMAGES else str(folder)
    if not photos:
        photos, source = sorted(write_photos(work / "photos").values()), "scikit-image photos"
    paths = [photos[i % len(photos)] for i in range(n)]
    for p in set(paths):
        p.read_bytes()  # into the page cache: every run below reads warm files
    items = [
        IngestItem(image_path=str(p), external_id=f"{i}:{p.name}") for i, p in enumerate(paths)
    ]
    distinct = f" ({len(set(paths))} files)" if len(set(paths)) < n else ""
    return items, f"{len(items)} {source}{distinct}"
