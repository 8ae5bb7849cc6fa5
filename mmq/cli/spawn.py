"""Start and stop worker processes for the demo, eval, benchmarks and tests."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis
from celery import Celery

from mmq.broker import consumers
from mmq.config import Settings
from mmq.embedded import Urls, export_urls, resolve_urls

log = logging.getLogger(__name__)


def ready_servers(settings: Settings) -> Urls:
    """Start (or reuse) the servers, export their URLs for the workers this process spawns,
    and bring the schema up to date: what a self-contained run needs before its workers."""
    from mmq.store.migrate import upgrade

    urls = resolve_urls(settings)
    export_urls(urls)
    upgrade(urls.database_url)
    return urls


def worker_command(queue: str) -> list[str]:
    return [sys.executable, "-m", "mmq.cli", "worker", "--queues", queue]


@contextmanager
def running_workers(
    app: Celery,
    *,
    queues: Sequence[str] = ("ingest", "search"),
    log_dir: Path,
    env: dict[str, str] | None = None,
    roots: Sequence[str | Path] = (),
    timeout: float = 120.0,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One worker process per queue (so an ingest backlog never starves searches); a queue
    named twice gets two processes (one Python process tops out at a few hundred images
    per second, whatever its GPU can do). `roots`: the only directories the workers may
    read image and video paths from."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env or os.environ)
    if roots:
        env["MMQ_INGEST_ROOTS"] = os.pathsep.join(str(Path(r).resolve()) for r in roots)
    procs = []
    try:
        for i, queue in enumerate(queues):
            name = queue if queues.count(queue) == 1 else f"{queue}-{i}"
            with open(log_dir / f"worker-{name}.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        worker_command(queue),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
        wait_for_workers(app, len(queues), procs, timeout=timeout)
        yield procs
    finally:
        stop_workers(procs)


def wait_for_workers(
    app: Celery, count: int, procs: Sequence[subprocess.Popen[bytes]], *, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"worker exited during start-up: {dead}")
        try:
            if len(app.control.ping(timeout=0.5)) >= count:
                return
        except (OSError, redis.ConnectionError) as exc:  # a broker still coming up
            log.warning("broker not answering yet: %s", exc)
            time.sleep(0.5)
    raise TimeoutError(f"{count} workers did not answer within {timeout:.0f}s")


def wait_for_consumer(app: Celery, queue: str, *, timeout: float) -> None:
    """Until a worker consumes `queue` (one more worker among running ones: a count of
    pings cannot tell it has come)."""
    deadline = time.monotonic() + timeout
    while not consumers(app, queue):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker consumes {queue} after {timeout:.0f}s")
        time.sleep(1)


def stop_workers(procs: Sequence[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    # SIGTERM is Celery's warm shutdown: running tasks finish, unstarted ones stay queued.
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
