"""Poison items: an item whose attempts never end is quarantined after
MMQ_MAX_ITEM_ATTEMPTS with its last error; the other items of its task are stored, and the
worker lives on. Two kinds of never-ending attempt are tested:

- the pool process running the item is SIGKILLed every time: prefork pool only (in the
  threads pool the process that would be killed is the worker itself);
- the item runs past the soft time limit every time: prefork and threads pools.

Each test runs its own worker on its own broker, so that it can kill pool processes and set
short limits without touching the session's workers.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.cli.spawn import wait_for_workers
from mmq.client import Client, IngestJob
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.jobs.records import psycopg_url
from tests.support.chaos import Broker, Worker, worker_env
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow


@contextmanager
def started(urls: Urls, work: Path, **settings: str) -> Iterator[tuple[Client, Worker]]:
    """A worker with `settings` on a broker of its own, and a client of that broker."""
    broker = Broker(work / "broker")
    url = broker.start()
    own = Urls(f"{url}/0", f"{url}/1", urls.database_url)
    env = worker_env(own, work, roots=[work], **settings)
    worker = Worker(env, work / "worker.log", pool=settings["MMQ_WORKER_POOL"])
    client = Client(Settings(broker_url=own.broker_url, database_url=own.database_url), own)
    try:
        worker.start()
        wait_for_workers(client.app, 1, [worker.main], timeout=180)
        yield client, worker
    finally:
        client.close()
        worker.stop()
        broker.stop()


def send_raw(client: Client, items: list[dict[str, object]]) -> str:
    # A raw request keeps the video in the same task as its neighbours.
    payload = {"collection": f"poison-{uuid.uuid4().hex[:8]}", "items": items}
    return str(client.app.send_task(INGEST_TASK, args=[payload], queue=INGEST_QUEUE).id)


def recorded(client: Client, job_id: str, timeout: float) -> IngestJob:
    """A raw request's job, once the worker has recorded it under the message's id (until
    then `client.job` sees no ingest job of that id)."""
    deadline = time.monotonic() + timeout
    while not isinstance(job := client.job(job_id), IngestJob):
        assert time.monotonic() < deadline, f"job {job_id} was never recorded"
        time.sleep(0.05)
    return job


def ended(client: Client, job_id: str) -> bool:
    job = client.job(job_id)
    return isinstance(job, IngestJob) and job.status().state == "done"


def items_around(video: Path) -> list[dict[str, object]]:
    return [
        {"text": "first neighbour", "external_id": "a"},
        {"text": "second neighbour", "external_id": "b"},
        {"video_path": str(video), "external_id": "poison"},
        {"text": "last neighbour", "external_id": "c"},
    ]


def test_an_item_whose_prefork_pool_process_is_killed_every_time_is_quarantined(
    urls: Urls, tmp_path: Path
) -> None:
    video = tmp_path / "poison.mp4"
    video.write_bytes(video_bytes(seconds=30))
    settings = {"MMQ_WORKER_POOL": "prefork", "MMQ_MAX_ITEM_ATTEMPTS": "2"}
    with started(urls, tmp_path, **settings) as (client, worker):
        job_id = send_raw(client, items_around(video))
        kills = 0
        seen: tuple[int, int] = (0, 0)
        deadline = time.monotonic() + 240
        with psycopg.connect(psycopg_url(urls.database_url), autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT t.attempts, i.attempts, i.status FROM ingest_tasks t"
                    " JOIN ingest_job_items i ON i.task_id = t.id"
                    " WHERE t.id = %s AND i.external_id = 'poison' AND t.state = 'running'",
                    (job_id,),
                ).fetchone()
                if row is not None and row[2] == "pending" and (row[0], row[1]) != seen:
                    # The whole task (first attempt), then the poison alone: kill each.
                    if row[0] == 1 or row[1] > seen[1]:
                        seen = (row[0], row[1])
                        for pid in worker.children():
                            os.kill(pid, signal.SIGKILL)
                        kills += 1
                if ended(client, job_id):
                    break
                time.sleep(0.02)
        result = recorded(client, job_id, timeout=1).result(timeout=10)
        by_id = {item.external_id: item for item in result.items}
        assert [by_id[k].status for k in "abc"] == ["stored"] * 3
        assert by_id["poison"].status == "failed"
        assert "quarantined: 2 attempts did not finish" in (by_id["poison"].error or "")
        assert kills == 3  # the whole task once, then the poison alone twice
        assert worker.main.poll() is None


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_an_item_past_the_soft_time_limit_every_time_is_quarantined(
    urls: Urls, tmp_path: Path, pool: str
) -> None:
    video = tmp_path / "slow.mp4"
    video.write_bytes(video_bytes(seconds=60))
    limits = dict(
        MMQ_WORKER_POOL=pool,
        MMQ_MAX_ITEM_ATTEMPTS="2",
        MMQ_TASK_SOFT_TIME_LIMIT_S="0.5",
        MMQ_TASK_TIME_LIMIT_S="30",
        MMQ_VISIBILITY_TIMEOUT_S="60",
    )
    with started(urls, tmp_path, **limits) as (client, worker):
        job_id = send_raw(client, items_around(video))
        result = recorded(client, job_id, timeout=120).result(timeout=120)
        by_id = {item.external_id: item for item in result.items}
        assert [by_id[k].status for k in "abc"] == ["stored"] * 3
        error = by_id["poison"].error or ""
        assert by_id["poison"].status == "failed"
        assert "quarantined: 2 attempts did not finish" in error
        assert "last error: SoftTimeLimitExceeded" in error
        assert worker.main.poll() is None
