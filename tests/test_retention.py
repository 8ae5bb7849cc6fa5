"""Retention and unknown ids: ingest jobs that ended long ago lose their rows (by `mmq jobs
prune` and by the workers' reconciler thread), never a job with unfinished tasks; an id
that is no job answers "unknown", not "queued", while a real search still goes queued,
running, done."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from mmq.cli.spawn import running_workers
from mmq.client import Client, IngestJob, RecommendJob, SearchJob, UnknownJob
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.errors import NotFound
from mmq.jobs import records
from mmq.jobs.reconcile import reconcile_forever
from mmq.jobs.retention import PeriodicPrune, prune_jobs
from mmq.jobs.sent_jobs import KEY
from mmq.schemas import IngestItem, IngestRequest
from tests.support.api import accepted, bearer, new_key, serving, wait_job
from tests.support.cli import mmq
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow

# Old enough for `--older-than-days 3`, young enough for the session workers' default
# retention (14 days): only what a test prunes on purpose goes.
AGE_DAYS = 5


@pytest.fixture()
def conn(urls: Urls) -> Iterator[psycopg.Connection]:
    with connect(urls.database_url) as c:
        # Whatever old job another test left is gone first: the counts below are this test's.
        prune_jobs(c, older_than_days=3)
        yield c


def recorded_job(conn: psycopg.Connection, *, ended: bool, age_days: float = AGE_DAYS) -> str:
    """A job as `Client.ingest` records it (two tasks, three items), created `age_days`
    ago; `ended`: every task done, one item stored and two failed (the second task's one
    item stays pending and its task queued otherwise)."""
    job_id = str(uuid.uuid4())
    collection = fresh("retention")
    tasks = []
    for texts in (["one", "two"], ["three"]):
        request = IngestRequest(collection=collection, items=[IngestItem(text=t) for t in texts])
        tasks.append(
            records.NewTask(
                id=str(uuid.uuid4()),
                request=request.model_dump(mode="json"),
                items=[(t, None) for t in texts],
            )
        )
    with conn.transaction():
        records.create_job(conn, job_id=job_id, collection=collection, tasks=tasks)
        conn.execute(
            "UPDATE ingest_jobs SET created_at = now() - make_interval(days => %s) WHERE id = %s",
            (age_days, job_id),
        )
        finished = [tasks[0].id, tasks[1].id] if ended else [tasks[0].id]
        conn.execute(
            "UPDATE ingest_tasks SET state = 'done', finished_at = now() WHERE id = ANY(%s)",
            (finished,),
        )
        conn.execute(
            "UPDATE ingest_job_items SET status = 'failed', error = 'test' WHERE task_id = ANY(%s)",
            (finished,),
        )
        conn.execute(
            "UPDATE ingest_job_items SET status = 'stored', error = NULL"
            " WHERE job_id = %s AND index = 0",
            (job_id,),
        )
    return job_id


def rows_of(conn: psycopg.Connection, job_id: str) -> tuple[int, int, int]:
    """(job rows, task rows, item rows) of `job_id`."""
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM ingest_jobs WHERE id = %(id)s),"
        " (SELECT count(*) FROM ingest_tasks WHERE job_id = %(id)s),"
        " (SELECT count(*) FROM ingest_job_items WHERE job_id = %(id)s)",
        {"id": job_id},
    ).fetchone()
    assert counts is not None
    return counts


def forget(conn: psycopg.Connection, *job_ids: str) -> None:
    """Delete jobs a test leaves unfinished, so no reconciler ever sends their tasks."""
    conn.execute("DELETE FROM ingest_jobs WHERE id = ANY(%s)", (list(job_ids),))


def test_mmq_jobs_prune_deletes_old_ended_jobs_only(conn: psycopg.Connection) -> None:
    old = [recorded_job(conn, ended=True) for _ in range(3)]
    unfinished = recorded_job(conn, ended=False, age_days=400)
    recent = recorded_job(conn, ended=True, age_days=1)
    assert rows_of(conn, old[0]) == (1, 2, 3)
    out = mmq("jobs", "prune", "--older-than-days", "3", "--json").stdout
    assert json.loads(out) == {"pruned": 3, "older_than_days": 3.0}
    for job_id in old:
        assert rows_of(conn, job_id) == (0, 0, 0)  # tasks and item results went with it
    assert rows_of(conn, unfinished) == (1, 2, 3)  # however old: its task has not ended
    assert rows_of(conn, recent) == (1, 2, 3)
    # Nothing left to prune; the plain output says how many.
    out = mmq("jobs", "prune", "--older-than-days", "3").stdout
    assert out == "pruned 0 ingest job(s) that ended and were created over 3 days ago\n"
    # Without the flag: MMQ_JOB_RETENTION_DAYS (14 by default) keeps the 5-day-old one.
    kept = recorded_job(conn, ended=True)
    assert json.loads(mmq("jobs", "prune", "--json").stdout)["older_than_days"] == 14.0
    assert rows_of(conn, kept) == (1, 2, 3)
    forget(conn, unfinished, recent, kept)


def test_a_negative_age_is_refused(urls: Urls) -> None:
    refused = mmq("jobs", "prune", "--older-than-days", "-1", check=False)
    assert refused.returncode == 3, refused
    assert refused.stderr.startswith("mmq jobs: bad_request: "), refused.stderr


def test_the_worker_side_prune_runs_once_a_period(conn: psycopg.Connection) -> None:
    now = [1000.0]
    prune = PeriodicPrune(older_than_days=3, every_s=3600, clock=lambda: now[0])
    first = recorded_job(conn, ended=True)
    unfinished = recorded_job(conn, ended=False)
    assert prune(conn) == 1  # due on its first call: a worker prunes soon after it starts
    assert rows_of(conn, first) == (0, 0, 0)
    assert rows_of(conn, unfinished) == (1, 2, 3)
    second = recorded_job(conn, ended=True)
    now[0] += 3599
    assert prune(conn) is None  # not due yet: the old job stays
    assert rows_of(conn, second) == (1, 2, 3)
    now[0] += 1
    assert prune(conn) == 1
    assert rows_of(conn, second) == (0, 0, 0)
    forget(conn, unfinished)


def test_pruning_goes_in_batches_and_two_pruners_do_not_conflict(
    conn: psycopg.Connection, urls: Urls
) -> None:
    jobs = [recorded_job(conn, ended=True) for _ in range(30)]
    counts: list[int] = []

    def pruner() -> None:
        with connect(urls.database_url) as own:
            counts.append(prune_jobs(own, older_than_days=3, batch=4))

    threads = [threading.Thread(target=pruner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 30, counts  # each job deleted once, by one of them
    assert all(rows_of(conn, j) == (0, 0, 0) for j in jobs)


def test_the_reconciler_thread_prunes(conn: psycopg.Connection, urls: Urls) -> None:
    """The loop a worker runs (workers/app.py), with a short period."""
    job_id = recorded_job(conn, ended=True)
    stop = threading.Event()
    prune = PeriodicPrune(older_than_days=3, every_s=3600)
    thread = threading.Thread(
        target=reconcile_forever,
        args=(urls.database_url, lambda task_id: None),
        kwargs=dict(after_s=3600, every_s=0.05, stop=stop, also=[prune]),
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while rows_of(conn, job_id) != (0, 0, 0):
            assert time.monotonic() < deadline, "the reconciler thread did not prune"
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_a_running_worker_prunes_a_real_job_and_then_it_is_unknown(
    client: Client, workers: Procs, conn: psycopg.Connection, state_dir: Path
) -> None:
    job = client.ingest([{"text": "kept for a while"}], collection=fresh("retention"))
    assert job.result(timeout=120).stored == 1
    conn.execute(
        "UPDATE ingest_jobs SET created_at = now() - interval '3 days' WHERE id = %s", (job.id,)
    )
    unfinished = recorded_job(conn, ended=False, age_days=3)
    # A worker of its own with a short reconciler period and a 2-day retention (the
    # session's workers keep 14 days), on a queue nobody sends to.
    env = os.environ | {"MMQ_RECONCILE_EVERY_S": "0.2", "MMQ_JOB_RETENTION_DAYS": "2"}
    with running_workers(
        client.app, queues=["retention-test"], log_dir=state_dir / "logs", env=env
    ):
        deadline = time.monotonic() + 120
        while rows_of(conn, job.id) != (0, 0, 0):
            assert time.monotonic() < deadline, "the worker did not prune the old job"
            time.sleep(0.2)
    assert rows_of(conn, unfinished) == (1, 2, 3)
    forget(conn, unfinished)
    again = client.job(job.id)
    assert isinstance(again, UnknownJob)
    assert again.status().state == "unknown"
    with pytest.raises(NotFound):
        job.status()  # the handle held from before: its rows are gone


def test_an_unknown_id_is_unknown_not_queued(client: Client, urls: Urls) -> None:
    job_id = str(uuid.uuid4())
    job = client.job(job_id)
    assert isinstance(job, UnknownJob)
    assert job.status().model_dump() == {
        "id": job_id,
        "state": "unknown",
        "error": None,
        "error_kind": None,
        "done_tasks": 0,
        "total_tasks": 0,
    }
    with pytest.raises(NotFound, match=f"no job {job_id}"):
        job.result(timeout=1)
    shown = mmq("status", job_id, check=False)
    assert shown.returncode == 4, shown
    assert json.loads(shown.stdout)["state"] == "unknown"
    assert shown.stderr.startswith(f"mmq status: not_found: no job {job_id}: "), shown.stderr


def test_a_search_goes_queued_running_done_and_is_known_while_its_result_lives(
    client: Client, workers: Procs, urls: Urls
) -> None:
    name = fresh("retention")
    assert client.ingest([{"text": "a red bicycle"}], collection=name).result(timeout=120).stored
    job = client.search(collection=name, text="bicycle", k=1)
    seen: list[str] = []
    deadline = time.monotonic() + 60
    while not seen or seen[-1] != "done":
        state = client.job(job.id).status().state
        if not seen or seen[-1] != state:
            seen.append(state)
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)
    order = ["queued", "running", "done"]
    assert seen == [s for s in order if s in seen], seen  # in order, never unknown
    assert isinstance(client.job(job.id), SearchJob)
    assert client.sent_job(job.id) is not None
    assert client.sent_job(job.id).collection == name  # type: ignore[union-attr]
    backend = redis.Redis.from_url(urls.result_backend)
    ttl = backend.ttl(KEY.format(job.id))
    assert 0 < ttl <= client.settings.result_expires_s
    # Without its record (a search sent on the wire by another producer), Celery's
    # result still makes it known; once that expires too, it is unknown.
    backend.delete(KEY.format(job.id))
    assert client.job(job.id).status().state == "done"
    backend.delete(f"celery-task-meta-{job.id}")
    assert client.job(job.id).status().state == "unknown"


def test_a_recommendation_is_known_as_one_and_its_api_job_has_its_hits(
    client: Client, workers: Procs, settings: Settings, urls: Urls
) -> None:
    name = fresh("retention")
    item = {"text": "a red bicycle", "external_id": "bike"}
    assert client.ingest([item], collection=name).result(timeout=120).stored
    client.record("ann", name, "bike", "like")
    job = client.recommend("ann", name, k=1)
    job.result(timeout=60)
    assert isinstance(client.job(job.id), RecommendJob)
    assert client.job(job.id).status().state == "done"
    key = new_key(urls, [name], "read")
    with serving(settings, urls) as api, httpx.Client(base_url=api.url, timeout=60) as http:
        response = http.post(
            f"/v1/collections/{name}/recommend",
            headers=bearer(key),
            json={"user": "ann", "k": 1, "exclude_seen": False, "wait_ms": 0},
        )
        body = wait_job(http, accepted(response), bearer(key), timeout=60)
    assert (body["kind"], body["state"], body["user"]) == ("recommend", "done", "ann"), body
    assert body["collection"] == name and "hits" in body


def test_an_ingest_job_is_an_ingest_job(client: Client, conn: psycopg.Connection) -> None:
    recent = recorded_job(conn, ended=True, age_days=0)
    assert isinstance(client.job(recent), IngestJob)
    assert client.job(recent).status().state == "done"
    forget(conn, recent)
