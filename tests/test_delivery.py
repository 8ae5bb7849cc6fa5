"""Delivery: ingest state in PostgreSQL outlives the result backend, a lost message is sent
again by the reconciler, and a message delivered twice stores nothing twice."""

from __future__ import annotations

import uuid

import pytest
import redis

from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.client import Client, IngestJob
from mmq.embedded import Urls
from mmq.errors import NotFound
from mmq.jobs import claims, records
from mmq.jobs.reconcile import reconcile
from mmq.schemas import IngestItem, IngestRequest
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs, all_alive

pytestmark = pytest.mark.slow


def test_ingest_results_outlive_the_result_backend(
    client: Client, workers: Procs, urls: Urls
) -> None:
    items = [IngestItem(text=f"caption {i}", external_id=f"t{i}") for i in range(3)]
    job = client.ingest(items, collection=fresh("outlive"), chunk_size=2)
    before = job.result(timeout=120)
    assert [i.status for i in before.items] == ["stored"] * 3
    # A search leaves its result in the backend, so there is one to lose for sure.
    client.search(collection=before.collection, text="caption 1").result(timeout=60)
    # As if every result had expired: the results only, not the broker's queues (the
    # result backend may be the broker's own database when MMQ_RESULT_BACKEND is unset).
    backend = redis.Redis.from_url(urls.result_backend)
    expired = list(backend.scan_iter("celery-task-meta-*"))
    assert expired  # there was something to lose
    backend.delete(*expired)
    assert not list(backend.scan_iter("celery-task-meta-*"))
    again = client.job(job.id)
    assert isinstance(again, IngestJob)
    assert again.status().state == "done"
    assert again.result(timeout=5) == before


def test_the_reconciler_sends_a_lost_message_again(
    client: Client, workers: Procs, urls: Urls
) -> None:
    job_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = IngestRequest(collection=fresh("lost"), items=[IngestItem(text="a lost caption")])
    task = records.NewTask(task_id, request.model_dump(mode="json"), [("a lost caption", None)])

    def send(tid: str, queue: str) -> None:
        client.app.send_task(INGEST_TASK, args=[{"task_id": tid}], queue=queue, task_id=tid)

    with connect(urls.database_url) as conn:
        # A producer wrote the job, and its message never reached the broker.
        with conn.transaction():
            records.create_job(conn, job_id=job_id, collection=request.collection, tasks=[task])
        assert client.job(job_id).status().state == "queued"
        # (Other tests' unfinished tasks may be in this database too: look at this one.)
        # A worker holds the lock of a task it is running: not sent again.
        with connect(urls.database_url) as holder:
            assert claims.try_lock(holder, task_id)
            assert task_id not in reconcile(conn, send, after_s=0)
        assert task_id not in reconcile(conn, send, after_s=3600)  # not stale yet
        assert task_id in reconcile(conn, send, after_s=0)
    job = client.job(job_id)
    assert isinstance(job, IngestJob)
    assert [i.status for i in job.result(timeout=120).items] == ["stored"]


def test_a_message_delivered_twice_stores_once(client: Client, workers: Procs, urls: Urls) -> None:
    items = [IngestItem(text="only once", external_id="once")]
    job = client.ingest(items, collection=fresh("twice"))
    first = job.result(timeout=120)
    with connect(urls.database_url) as conn:
        (task_id,) = [r[0] for r in conn.execute(
            "SELECT id FROM ingest_tasks WHERE job_id = %s", (job.id,)
        )]  # fmt: skip
        sent = client.app.send_task(
            INGEST_TASK, args=[{"task_id": task_id}], queue=INGEST_QUEUE, task_id=task_id
        )
        again = sent.get(timeout=60)
        attempts = conn.execute(
            "SELECT attempts FROM ingest_tasks WHERE id = %s", (task_id,)
        ).fetchone()
        rows = conn.execute(
            "SELECT count(*) FROM items i JOIN collections c ON c.id = i.collection_id"
            " WHERE c.name = %s",
            (first.collection,),
        ).fetchone()
    assert again["items"][0]["item_id"] == first.items[0].item_id
    assert attempts == (1,) and rows == (1,)
    assert client.job(job.id).result(timeout=5) == first


def test_a_message_naming_no_task_fails_clearly(client: Client, workers: Procs) -> None:
    sent = client.app.send_task(INGEST_TASK, args=[{"task_id": "nope"}], queue=INGEST_QUEUE)
    with pytest.raises(NotFound, match="no ingest task nope in the database"):
        sent.get(timeout=60)
    assert all_alive(workers)


def test_an_attempt_postgresql_ended_is_taken_back(urls: Urls) -> None:
    # A worker that lost PostgreSQL mid-attempt sends the task again saying so; the
    # attempt it takes back leaves the next one a first attempt (the whole chunk at once,
    # no item counted), so outages never add up to a quarantine.
    job_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    request = IngestRequest(collection=fresh("outage"), items=[IngestItem(text="a caption")])
    task = records.NewTask(task_id, request.model_dump(mode="json"), [("a caption", None)])
    with connect(urls.database_url) as conn:
        with conn.transaction():
            records.create_job(conn, job_id=job_id, collection=request.collection, tasks=[task])
        for _ in range(3):  # three outages in a row
            with conn.transaction():
                claim = claims.claim_task(conn, task_id)
                assert claim is not None and claim.attempts == 1
            with conn.transaction():
                claims.forgive_attempt(conn, task_id)
        state = conn.execute("SELECT state, attempts FROM ingest_tasks WHERE id = %s", (task_id,))
        assert state.fetchone() == ("queued", 0)
        with conn.transaction():
            claims.finish_tasks(conn, [task_id])  # not left for the reconciler to send
