"""`mmq worker`: a Celery worker for the given queues."""

from __future__ import annotations

import argparse
import os

from mmq.config import get_settings
from mmq.embedded import export_urls, resolve_urls


def run_worker(args: argparse.Namespace) -> int:
    # Resolve (and, with no URLs configured, start or reuse) the servers first, and export
    # the URLs so the pool processes connect to the same ones without managing them.
    export_urls(resolve_urls(get_settings()))
    get_settings.cache_clear()
    from workers.app import app

    queues = ",".join(q.strip() for q in args.queues.split(",") if q.strip())
    argv = [
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(args.concurrency),
        "--loglevel",
        args.loglevel,
        # Two workers on one host need distinct node names.
        "--hostname",
        f"mmq-{queues.replace(',', '-')}-{os.getpid()}@%h",
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv)
    return 0
