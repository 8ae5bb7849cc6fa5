"""The GPU check as one command: end-to-end images/s of a random ViT-B/32-shaped CLIP with
1 and then several ingest worker processes sharing the GPU.

    python -m benchmarks.gpu_ingest [--workers 1,4] [--images 3000] [--threads 16]
                                    [--chunk 128] [--shape vit-b-32]

No checkpoint is downloaded: the CLIP is random (benchmarks/random_clip.py), with the real
model's layers and sizes, so its speed is the real one's. The photos are flickr8k-dev's,
repeated to `--images` items. Each worker process runs `--threads` task threads and pools
two database connections per thread: the run checks before it starts that every process
fits under PostgreSQL's `max_connections` (the embedded server allows 500), and says how
many processes would. Prints one line per worker count and writes
benchmarks/results-gpu.json. On a CPU it runs too, slowly (`--shape tiny` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import bench_ingest
from benchmarks.bench import machine
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import get_encoder
from mmq.jobs.records import psycopg_url
from tests.support.clip import SHAPES, build_random_clip
from tests.support.data import FLICKR_IMAGES, photo_items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,4", help="ingest worker processes, each run")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=16, help="task threads per process")
    parser.add_argument("--chunk", type=int, default=128, help="items per ingest message")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vit-b-32")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    os.environ |= {"MMQ_WORKER_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="mmq-gpu-") as tmp:
        model = f"clip:{build_random_clip(Path(tmp) / 'clip', shape=args.shape)}"
        os.environ["MMQ_MODEL"] = model
        get_settings.cache_clear()
        settings = get_settings()
        urls = ready_servers(settings)
        room = connections_free(urls.database_url)
        most = room // (2 * args.threads + 1)  # each pool, and each reconciler's one more
        if max(counts) > most:
            raise SystemExit(
                f"{max(counts)} processes of {args.threads} threads need"
                f" {max(counts) * (2 * args.threads + 1)} connections; PostgreSQL has {room}"
                f" free: run at most {most}, or fewer threads"
            )
        encoder = get_encoder(model, settings.device, cache_dir=settings.state_dir / "cache")
        encoder.load()
        items, source = photo_items(args.images, settings.state_dir / "bench", FLICKR_IMAGES)
        out: dict[str, Any] = {"machine": machine(), "model": f"random CLIP {args.shape}"}
        out |= {"photos": source, "threads": args.threads, "chunk": args.chunk}
        out["limit"] = bench_ingest.model_limit(encoder, items)
        print(f"limit (forward pass alone): {out['limit']['images_per_s']:.0f} images/s")
        client = Client(settings, urls)
        roots = sorted({Path(it.image_path or "").parent for it in items})
        for n in counts:
            logs = settings.state_dir / "logs" / f"gpu-{n}"
            with running_workers(client.app, queues=("ingest",) * n, log_dir=logs, roots=roots):
                bench_ingest.through_queue(client, items[:256], chunk_size=args.chunk)  # warm-up
                t = bench_ingest.through_queue(client, items, chunk_size=args.chunk)
            out[f"{n}_workers"] = {
                "images_per_s": t.images_per_s,
                "cpu_ms_per_image": t.cpu_ms_per_image,
            }
            print(
                f"{n} ingest worker process(es): {t.images_per_s:.0f} images/s,"
                f" {t.cpu_ms_per_image:.1f} CPU ms per image",
                flush=True,
            )
    Path(__file__).with_name("results-gpu.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


def connections_free(database_url: str) -> int:
    """PostgreSQL's `max_connections` less those in use and those reserved for superusers."""
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        ).fetchone()
    assert row is not None
    return int(row[0])


if __name__ == "__main__":
    raise SystemExit(main())
