"""A change to the ingest or search path, measured against the code it changes: alternating
rounds.

    python -m benchmarks.overhead_ab --base COMMIT [--b COMMIT] [--search] [--rounds 3]
                                     [--images 500] [--env-b NAME=VALUE ...]

Each round starts a worker from one tree (A: `--base` checked out in a temporary git
worktree, B: `--b` likewise, or a copy of this tree), and measures; A and B alternate
(A B A B ...) so that the machine's drift falls on both. `--env-b` sets B's worker
environment (a setting against its default: `--base HEAD --env-b MMQ_INGEST_COALESCE=8`).
The producer is this tree's in both.

- ingest (the default): the photos in chunks of MMQ_INGEST_CHUNK_SIZE, then one per
  message; images/s and the whole machine's CPU time per image, less the forward pass and
  decoding alone (measured once, here, as `make bench` does): the overhead.
- `--search`: text queries on a 10,000-vector collection (the photos' vectors and
  synthetic ones), from 8 producers at once (queries/s, CPU ms per query), and one at a
  time (p50 ms, enqueue to result).

Prints each round and the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import bench_ingest, bench_search
from benchmarks.bench import queries
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import Encoder, get_encoder
from mmq.schemas import IngestItem
from mmq.store.db import make_engine, make_sessionmaker
from tests.support.data import FLICKR_IMAGES, photo_items

REPO = Path(__file__).resolve().parent.parent
Round = Callable[[Client], dict[str, float]]  # one round's figures, by name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (A)")
    parser.add_argument("--b", help="the commit to measure (B); default: this tree")
    parser.add_argument("--search", action="store_true", help="search rounds, not ingest")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    settings = get_settings()
    urls = ready_servers(settings)
    encoder = get_encoder(settings.model, settings.device, cache_dir=settings.state_dir / "cache")
    encoder.load()
    items, _ = photo_items(args.images, settings.state_dir / "bench", FLICKR_IMAGES)
    client = Client(settings, urls)
    roots = sorted({Path(it.image_path or "").parent for it in items})
    measure, queue, note = (search_round if args.search else ingest_round)(encoder, items, client)
    figures: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}
    with tempfile.TemporaryDirectory(prefix="mmq-ab-") as tmp:
        base, this = Path(tmp) / "base", Path(tmp) / "this"
        worktrees = [(base, args.base)] + ([(this, args.b)] if args.b else [])
        for path, commit in worktrees:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                check=True,
                capture_output=True,
            )
        if not args.b:  # this tree as it is now: editing it while the rounds run changes nothing
            for part in ("mmq", "workers", "migrations"):
                shutil.copytree(REPO / part, this / part, symlinks=True)
        try:
            for _ in range(args.rounds):
                for name, tree in (("A", base), ("B", this)):
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    if name == "B":
                        env |= dict(pair.split("=", 1) for pair in args.env_b)
                    logs = settings.state_dir / "logs" / f"ab-{name}"
                    with running_workers(
                        client.app, queues=(queue,), log_dir=logs, env=env, roots=roots
                    ):
                        got = measure(client)
                    for key, value in got.items():
                        figures[name].setdefault(key, []).append(value)
                    print(name, ", ".join(f"{k} {v:.1f}" for k, v in got.items()), flush=True)
        finally:
            for path, _ in worktrees:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                    check=False,
                )
    tree_b = f"{args.b or 'this tree'}{' with ' + ' '.join(args.env_b) if args.env_b else ''}"
    print(f"A = {args.base}, B = {tree_b}; {note}")
    print(f"median of {args.rounds} rounds")
    for key in figures["A"]:
        a, b = (statistics.median(figures[n][key]) for n in ("A", "B"))
        print(f"  {key:44s} {a:8.1f} → {b:8.1f}")
    return 0


def ingest_round(
    encoder: Encoder, items: list[IngestItem], client: Client
) -> tuple[Round, str, str]:
    limit = bench_ingest.model_limit(encoder, items)
    beside_model = bench_ingest.forward_cost_ms(limit) + bench_ingest.decode_cost_ms(encoder, items)

    def measure(client: Client) -> dict[str, float]:
        bench_ingest.through_queue(client, items[:64], chunk_size=16)  # warm-up
        out = {}
        for mode, size in (("batch", client.settings.ingest_chunk_size), ("one per message", 1)):
            t = bench_ingest.through_queue(client, items, chunk_size=size)
            out[f"{mode}: images/s"] = t.images_per_s
            out[f"{mode}: overhead CPU ms/image"] = t.cpu_ms_per_image - beside_model
        return out

    return measure, "ingest", f"forward pass and decoding alone: {beside_model:.1f} ms/image"


def search_round(
    encoder: Encoder, items: list[IngestItem], client: Client
) -> tuple[Round, str, str]:
    settings = client.settings
    real = bench_search.photo_vectors(encoder, items[:256])
    vectors = np.concatenate([real, bench_search.synthetic(real, 10_000 - len(real))])
    sessions = make_sessionmaker(make_engine(client.urls.database_url, pool_size=2))
    name = bench_search.build(sessions, encoder, settings, vectors)
    texts = queries(200)

    def measure(client: Client) -> dict[str, float]:
        bench_search.qps(client, name, texts[:16])  # warm-up
        busy0 = bench_ingest.machine_busy_s()
        rate = bench_search.qps(client, name, texts * 2)
        cpu = 1000 * (bench_ingest.machine_busy_s() - busy0) / (2 * len(texts))
        lone = []
        for t in texts[:100]:
            t0 = time.perf_counter()
            client.search(collection=name, text=t, targets=["image"], k=10).result(60)
            lone.append(1000 * (time.perf_counter() - t0))
        return {
            "8 producers: queries/s": rate,
            "8 producers: CPU ms/query": cpu,
            "one at a time: p50 ms": float(np.percentile(lone, 50)),
        }

    return measure, "search", f"{len(vectors)} vectors, {len(texts)} caption queries"


if __name__ == "__main__":
    raise SystemExit(main())
