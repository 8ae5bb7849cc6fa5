"""Ingest throughput: the model's limit, batch ingest, one item per message, and the naive way.

Used by benchmarks/bench.py (`make bench`); every figure is images per second.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import Encoder
from mmq.encoders.base import cpu_count
from mmq.media import decode_image, read_image_bytes
from mmq.schemas import IngestItem, IngestResult


def model_limit(encoder: Encoder, items: list[IngestItem]) -> dict[str, Any]:
    """The model's forward pass alone on images already decoded, resized and normalised, at
    the best batch size and thread layout: one pass at a time on 1 or all torch threads, or
    one single-threaded pass per core side by side (what a worker's encode streams do). What
    the pipeline around the model could at most reach."""
    import torch

    images = []
    for item in items[:256]:
        image = Image.open(item.image_path or "").convert("RGB")
        images.append(image.resize((224, 224), Image.Resampling.BICUBIC))
    prepared = encoder.prepare_images(images)
    encoder.encode_prepared(prepared[:8], 8)  # warm-up
    cores = cpu_count()
    layouts = sorted({(1, 1), (1, cores), (cores, 1)})  # (passes side by side, torch threads)
    batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    if encoder.device == "cuda":
        # A GPU wants large batches, and enough images for several passes of the largest;
        # torch's CPU threads do not matter there.
        prepared, batches, layouts = torch.cat([prepared] * 8), (16, 32, 64, 128, 256), [(1, 1)]
        encoder.encode_prepared(prepared[:256], 256)
    best: dict[str, Any] = {"images_per_s": 0.0}
    curve: dict[str, float] = {}
    threads_before = torch.get_num_threads()
    for streams, threads in layouts:
        torch.set_num_threads(threads)
        for batch in batches:
            rate = _forward_rate(encoder, prepared, batch, streams)
            curve[f"batch {batch}, {streams}x{threads} threads"] = rate
            if rate > best["images_per_s"]:
                best = {"images_per_s": rate, "batch": batch, "streams": streams}
                best["threads"] = threads
    torch.set_num_threads(threads_before)
    return {**best, "curve": curve}


def forward_cost_ms(limit: dict[str, Any]) -> float:
    """CPU milliseconds per image of the forward pass alone: the cores `model_limit`'s best
    layout kept busy, per image."""
    return 1000 * limit["streams"] * limit["threads"] / limit["images_per_s"]


def _forward_rate(encoder: Encoder, prepared: Any, batch: int, streams: int) -> float:
    """Images per second through `streams` threads, each encoding its share in batches."""
    n = len(prepared)

    def run(part: range) -> None:
        for start in range(part.start, part.stop, batch):
            stop = min(start + batch, part.stop)
            encoder.encode_prepared(prepared[start:stop], stop - start)

    share = -(-n // streams)
    parts = [range(i, min(i + share, n)) for i in range(0, n, share)]
    t0 = time.perf_counter()
    if streams == 1:
        run(parts[0])
    else:
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(run, parts))
    return n / (time.perf_counter() - t0)


class Throughput(NamedTuple):
    images_per_s: float
    cpu_ms_per_image: float  # the whole machine's busy CPU time (every process) per image


def through_queue(client: Client, items: list[IngestItem], *, chunk_size: int) -> Throughput:
    """Images per second from the first enqueue to the last row stored."""
    busy0, t0 = machine_busy_s(), time.monotonic()
    job = client.ingest(items, collection=f"bench-{uuid.uuid4().hex[:8]}", chunk_size=chunk_size)
    result = job.result(timeout=3600)
    wall, busy = time.monotonic() - t0, machine_busy_s() - busy0
    assert isinstance(result, IngestResult)
    if result.failed:
        raise SystemExit(f"ingest failed: {[i.error for i in result.items if i.error][:3]}")
    return Throughput(len(items) / wall, 1000 * busy / len(items))


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal, no guests


def decode_cost_ms(encoder: Encoder, items: list[IngestItem]) -> float:
    """CPU milliseconds per image to read, decode and prepare one photo, on one thread: the
    work a worker does beside the forward pass."""
    settings = get_settings()
    paths = [item.image_path or "" for item in items[:100]]
    t0 = time.thread_time()
    for path in paths:
        data = read_image_bytes(path, max_bytes=settings.max_image_bytes)
        image = decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=encoder.decode_side,
        )
        encoder.prepare_images([image])
    return 1000 * (time.thread_time() - t0) / len(paths)
