"""`mmq worker`: a Celery worker for the given queues."""

from __future__ import annotations

import argparse
import os
import re

from mmq.broker import INGEST_QUEUE, SEARCH_QUEUE, model_queue
from mmq.config import get_settings
from mmq.embedded import export_urls, resolve_urls


def run_worker(args: argparse.Namespace) -> int:
    # Resolve (and, with no URLs configured, start or reuse) the servers first, and export
    # the URLs so the pool processes connect to the same ones without managing them.
    settings = get_settings()
    export_urls(resolve_urls(settings))
    # The runtime reads the pool from the settings (batch encodes across threads or not),
    # and the threads pool's size (its database pool holds two connections per thread).
    pool = args.pool or settings.worker_pool
    os.environ["MMQ_WORKER_POOL"] = pool
    concurrency = args.concurrency or (settings.worker_threads if pool == "threads" else 1)
    if pool == "threads":
        os.environ["MMQ_WORKER_THREADS"] = str(concurrency)
    get_settings.cache_clear()
    from workers.app import app

    named = [q.strip() for q in args.queues.split(",") if q.strip()]
    argv = [
        "worker",
        "--queues",
        ",".join(with_model_queues(named, settings.model)),
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        args.loglevel,
        # Two workers on one host need distinct node names.
        "--hostname",
        f"mmq-{re.sub(r'[^A-Za-z0-9.-]', '_', '-'.join(named))}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)
    return 0


def with_model_queues(queues: list[str], model: str) -> list[str]:
    """`queues`, and for the ingest and search queues among them the queue of their work
    that needs this worker's model (a reindex to it, a search of its collections)."""
    extra = [model_queue(q, model) for q in queues if q in (INGEST_QUEUE, SEARCH_QUEUE)]
    return queues + [q for q in extra if q not in queues]
