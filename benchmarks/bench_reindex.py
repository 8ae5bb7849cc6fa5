"""Re-embedding against ingesting: the same photos, the same model, the same workers.

Used by benchmarks/bench.py (`make bench`), which calls `measure` with its workers running
(an ingest worker and a search worker of the served model). In each of two rounds the
photos are ingested into a fresh collection (timed), which goes to the other offline model
(`lite-conse` from `lite`, or back) on a worker of that model, then back to the served
model on the ingest worker that ingested it: that reindex is timed alone too. The medians
of the rounds are compared.

Then it goes to the other model once more while one producer searches it, one query
after another: p50 before (idle) and while the reindex runs (the served model answers
until the switch), and how many searches failed (the goal: none).
Goals (issue 17): re-embedding keeps at least 0.9 of the ingest rate, and search p50
during a reindex stays within 2× of idle.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_ingest import through_queue
from mmq.cli.spawn import running_workers, wait_for_consumer
from mmq.client import Client
from mmq.config import get_settings
from mmq.errors import MmqError
from mmq.schemas import IngestItem

RATE_GOAL, P50_GOAL = 0.9, 2.0


def measure(
    client: Client,
    *,
    items: list[IngestItem],
    served_model: str,
    texts: list[str],
    log_dir: Path,
    roots: list[Path],
    rounds: int = 2,
) -> dict[str, Any]:
    """`rounds` rounds of: ingest `items` into a fresh collection (timed), reindex it to
    the other model, then back (timed); then search during one more reindex."""
    other = "lite-conse" if served_model != "lite-conse" else "lite"
    env = {**os.environ, "MMQ_MODEL": other}
    queues = (f"ingest.{other},search.{other}",)
    ingest_rates, back_rates, away_rates = [], [], []
    chunk = get_settings().ingest_chunk_size
    with running_workers(client.app, queues=queues, log_dir=log_dir, env=env, roots=roots):
        wait_for_consumer(client.app, f"ingest.{other}", timeout=300)
        for _ in range(rounds):
            before = {c.name for c in client.collections()}
            ingest_rates.append(through_queue(client, items, chunk_size=chunk).images_per_s)
            (collection,) = {c.name for c in client.collections()} - before
            away_rates.append(_timed_reindex(client, collection, other))
            # Timed alone, as the ingest was: back to the served model, by the worker that
            # ingested the photos.
            back_rates.append(_timed_reindex(client, collection, served_model))
        # Searches answered by the served model (its own search worker), before and while
        # the other model's worker re-embeds the collection.
        idle = _search_latencies(client, collection, texts, until=None)
        during: dict[str, Any] = {}
        stop = threading.Event()

        def search_until_stopped() -> None:
            during.update(_search_latencies(client, collection, texts, until=stop))

        searcher = threading.Thread(target=search_until_stopped)
        searcher.start()
        try:
            _timed_reindex(client, collection, other)
        finally:
            stop.set()
            searcher.join()
    ingest, back = float(np.median(ingest_rates)), float(np.median(back_rates))
    p50_idle, p50_during = float(np.median(idle["ms"])), float(np.median(during["ms"]))
    return {
        "items": len(items),
        "rounds": rounds,
        "ingest_images_per_s": ingest,
        "reindex_images_per_s": back,
        f"reindex_to_{other}_images_per_s": float(np.median(away_rates)),
        "reindex_ratio_to_ingest": back / ingest,
        "search_p50_idle_ms": p50_idle,
        "search_p50_during_ms": p50_during,
        "search_p50_ratio": p50_during / p50_idle,
        "searches_during": len(during["ms"]),
        "searches_failed_during": during["failed"],
    }


def _timed_reindex(client: Client, collection: str, model: str) -> float:
    """Images per second from `Client.reindex` to the switch."""
    t0 = time.monotonic()
    result = client.reindex(collection, model=model).result(timeout=3600)
    wall = time.monotonic() - t0
    if not result.switched:
        raise SystemExit(f"reindex to {model} did not switch: {result.failed[:3]}")
    return result.items / wall


def _search_latencies(
    client: Client, collection: str, texts: list[str], *, until: threading.Event | None
) -> dict[str, Any]:
    """Milliseconds of each search, one after another: `texts` once, or round and round
    until `until` is set."""
    ms: list[float] = []
    failed = 0
    i = 0
    while (until is None and i < len(texts)) or (until is not None and not until.is_set()):
        t0 = time.perf_counter()
        try:
            client.search(collection=collection, text=texts[i % len(texts)], k=10).result(60)
            ms.append(1e3 * (time.perf_counter() - t0))
        except MmqError:
            failed += 1
        i += 1
    return {"ms": ms, "failed": failed}


def print_table(row: dict[str, Any]) -> None:
    rate, p50 = row["reindex_ratio_to_ingest"], row["search_p50_ratio"]
    print(
        f"reindex: {row['items']} items at {row['reindex_images_per_s']:.1f}/s against ingest's "
        f"{row['ingest_images_per_s']:.1f}/s = {rate:.2f}x (goal >= {RATE_GOAL}: "
        f"{'met' if rate >= RATE_GOAL else 'NOT met'})"
    )
    print(
        f"search p50 during the reindex {row['search_p50_during_ms']:.1f} ms against idle "
        f"{row['search_p50_idle_ms']:.1f} ms = {p50:.2f}x (goal <= {P50_GOAL}: "
        f"{'met' if p50 <= P50_GOAL else 'NOT met'}); {row['searches_during']} searches, "
        f"{row['searches_failed_during']} failed"
    )


def main() -> int:
    """This part of `make bench` alone: `python -m benchmarks.bench_reindex [--images N]`."""
    import argparse

    from benchmarks.bench import queries
    from mmq.cli.spawn import ready_servers
    from tests.support.data import FLICKR_IMAGES, photo_items

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    settings = get_settings()
    urls = ready_servers(settings)
    items, _ = photo_items(args.images, settings.state_dir / "bench", FLICKR_IMAGES)
    roots = sorted({Path(it.image_path).parent for it in items if it.image_path})
    client = Client(settings, urls)
    logs = settings.state_dir / "logs"
    with running_workers(client.app, queues=("ingest", "search"), log_dir=logs, roots=roots):
        through_queue(client, items[:64], chunk_size=16)  # warm-up
        row = measure(
            client,
            items=items,
            served_model=settings.model,
            texts=queries(args.queries),
            log_dir=logs,
            roots=roots,
        )
    print_table(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
