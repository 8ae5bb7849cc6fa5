"""Fresh ingest tasks run as one (IngestTasks.run_together), on a real PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from mmq.jobs import claims, records
from mmq.services.ingest_tasks import DUPLICATE, RUN_ALONE, IngestTasks
from mmq.store.db import make_engine, make_sessionmaker

pytestmark = pytest.mark.slow


@pytest.fixture()
def run(urls, encoder, settings):  # type: ignore[no-untyped-def]
    engine = make_engine(urls.database_url, pool_size=2)
    sessions = make_sessionmaker(engine)

    yield IngestTasks(encoder, engine, sessions, settings).run_together
    engine.dispose()


@pytest.fixture()
def conn(urls):  # type: ignore[no-untyped-def]
    with psycopg.connect(records.psycopg_url(urls.database_url), autocommit=True) as c:
        yield c


def write_job(conn: psycopg.Connection, collection: str, items: list[dict]) -> list[str]:  # type: ignore[type-arg]
    """A job of one task per item, as mmq.Client writes it for one item per message."""
    job_id = str(uuid.uuid4())
    tasks = [
        records.NewTask(
            str(uuid.uuid4()),
            {"collection": collection, "items": [item]},
            [(str(item.get("image_path") or item.get("text")), item.get("external_id"))],
        )
        for item in items
    ]
    with conn.transaction():
        records.create_job(conn, job_id=job_id, collection=collection, tasks=tasks)
    return [t.id for t in tasks]


def task_row(conn: psycopg.Connection, task_id: str) -> tuple:  # type: ignore[type-arg]
    row = conn.execute("SELECT state, attempts FROM ingest_tasks WHERE id = %s", (task_id,))
    return tuple(row.fetchone() or ())


def test_fresh_tasks_run_as_one_and_each_gets_its_own_result(
    run, conn, photos: dict[str, Path], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"not a JPEG")
    items = [
        {"image_path": str(photos["chelsea"]), "external_id": "cat"},
        {"image_path": str(bad), "external_id": "bad"},
        {"text": "a cup of coffee", "external_id": "coffee"},
    ]
    collection = f"together-{uuid.uuid4().hex[:8]}"
    ids = write_job(conn, collection, items)
    other = write_job(conn, f"{collection}-other", [{"text": "elsewhere"}])
    outcomes = run(ids + other)
    assert {outcomes[t].status for t in ids + other} == {"done"}
    results = [outcomes[t].result for t in ids]
    # Each task's result is its own item, indexed from the task's first, as alone.
    assert [r.items[0].index for r in results] == [0, 0, 0]
    assert [r.items[0].external_id for r in results] == ["cat", "bad", "coffee"]
    assert [r.items[0].status for r in results] == ["stored", "failed", "stored"]
    assert "not a supported image" in (results[1].items[0].error or "")
    assert {r.collection for r in results} == {collection}
    assert outcomes[other[0]].result.collection == f"{collection}-other"  # its own collection
    assert [task_row(conn, t) for t in ids + other] == [("done", 1)] * 4


def test_tasks_that_are_not_fresh_or_hold_a_video_are_left_to_run_alone(run, conn) -> None:  # type: ignore[no-untyped-def]
    collection = f"alone-{uuid.uuid4().hex[:8]}"
    items = [{"text": "fresh"}, {"text": "attempted"}, {"video_path": "/nowhere/clip.mp4"}]
    fresh, attempted, video = write_job(conn, collection, items)
    conn.execute("UPDATE ingest_tasks SET attempts = 1 WHERE id = %s", (attempted,))
    unknown = f"unknown-{uuid.uuid4()}"
    outcomes = run([fresh, attempted, video, unknown])
    assert outcomes[fresh].status == "done"
    assert [outcomes[t] for t in (attempted, video, unknown)] == [RUN_ALONE] * 3
    # untouched, and not left locked
    assert [task_row(conn, t) for t in (attempted, video)] == [("queued", 1), ("queued", 0)]
    assert claims.try_lock(conn, attempted) and claims.try_lock(conn, video)
    conn.execute("SELECT pg_advisory_unlock_all()")


def test_a_task_another_worker_holds_is_skipped(run, conn, urls) -> None:  # type: ignore[no-untyped-def]
    (held,) = write_job(conn, f"held-{uuid.uuid4().hex[:8]}", [{"text": "held"}])
    with psycopg.connect(records.psycopg_url(urls.database_url), autocommit=True) as holder:
        assert claims.try_lock(holder, held)
        assert run([held]) == {held: DUPLICATE}
    assert task_row(conn, held) == ("queued", 0)
