"""Ingest throughput: the model's limit, batch ingest, one item per message, and the naive way.

Used by benchmarks/bench.py (`make bench`); every figure is images per second.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from mmq.cli.demo import write_photos
from mmq.client import Client
from mmq.encoders import Encoder
from mmq.schemas import IngestItem, IngestResult

FLICKR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flickr8k-dev" / "images"


def photo_items(n: int, work: Path) -> tuple[list[IngestItem], str]:
    """`n` real photos: flickr8k-dev when present, else the bundled photos repeated with
    distinct external ids (then each file is decoded and encoded again, as a new item)."""
    if FLICKR.is_dir():
        paths, source = sorted(FLICKR.glob("*.jpg"))[:n], "flickr8k-dev"
    else:
        photos = sorted(write_photos(work / "photos").values())
        paths, source = [photos[i % len(photos)] for i in range(n)], "scikit-image photos"
    for p in set(paths):
        p.read_bytes()  # into the page cache: every run below reads warm files
    items = [
        IngestItem(image_path=str(p), external_id=f"{i}:{p.name}") for i, p in enumerate(paths)
    ]
    return items, f"{len(items)} {source}"


def model_limit(encoder: Encoder, items: list[IngestItem]) -> dict[str, Any]:
    """The model's forward pass alone on pre-decoded images already at its input size, at
    the best batch size and thread count: what the pipeline around it could at most reach."""
    import torch

    images = []
    for item in items[:256]:
        image = Image.open(item.image_path or "").convert("RGB")
        images.append(image.resize((224, 224), Image.Resampling.BICUBIC))
    encoder.encode_images(images[:8])  # warm-up
    best: dict[str, float] = {"images_per_s": 0.0}
    curve: dict[str, float] = {}
    threads_before = torch.get_num_threads()
    for threads in sorted({1, threads_before}):
        torch.set_num_threads(threads)
        for batch in (1, 4, 8, 16, 32, 64):
            t0 = time.perf_counter()
            for start in range(0, len(images), batch):
                encoder.encode_images(images[start : start + batch])
            rate = len(images) / (time.perf_counter() - t0)
            curve[f"batch {batch}, {threads} threads"] = rate
            if rate > best["images_per_s"]:
                best = {"images_per_s": rate, "batch": batch, "threads": threads}
    torch.set_num_threads(threads_before)
    return {**best, "curve": curve}


def through_queue(client: Client, items: list[IngestItem], *, chunk_size: int) -> float:
    """Images per second from the first enqueue to the last row stored."""
    t0 = time.monotonic()
    job = client.ingest(items, collection=f"bench-{uuid.uuid4().hex[:8]}", chunk_size=chunk_size)
    result = job.result(timeout=3600)
    wall = time.monotonic() - t0
    assert isinstance(result, IngestResult)
    if result.failed:
        raise SystemExit(f"ingest failed: {[i.error for i in result.items if i.error][:3]}")
    return len(items) / wall
