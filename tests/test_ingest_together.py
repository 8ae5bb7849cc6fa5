"""Ingest tasks run from their rows (mmq/services/ingest_tasks.py), in-process with the `lite`
encoder, on a real PostgreSQL: fresh tasks run as one (IngestTasks.run_together), any task
runs alone (IngestTasks.run_alone)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.embedded import Urls
from mmq.encoders import Encoder
from mmq.errors import NotFound
from mmq.jobs import claims, records
from mmq.schemas import IngestItem
from mmq.services import ingest_tasks
from mmq.services.ingest_tasks import DONE, DUPLICATE, RUN_ALONE, IngestTasks
from mmq.store import repository
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.tables import Collection
from tests.support.names import fresh

pytestmark = pytest.mark.slow


@pytest.fixture()
def tasks(urls: Urls, encoder: Encoder, settings: Settings) -> Iterator[IngestTasks]:
    engine = make_engine(urls.database_url, pool_size=2)
    yield IngestTasks(encoder, engine, make_sessionmaker(engine), settings)
    engine.dispose()


@pytest.fixture()
def conn(urls: Urls) -> Iterator[psycopg.Connection]:
    with psycopg.connect(records.psycopg_url(urls.database_url), autocommit=True) as c:
        yield c


def write_job(conn: psycopg.Connection, collection: str, items: list[dict[str, Any]]) -> list[str]:
    """A job of one task per item, as mmq.Client writes it for one item per message."""
    return write_tasks(conn, collection, [[item] for item in items])


def write_tasks(
    conn: psycopg.Connection, collection: str, chunks: list[list[dict[str, Any]]]
) -> list[str]:
    """A job of one task per chunk of items; returns the task ids."""
    job_id = str(uuid.uuid4())
    # As the Client stores them: every field named, those not used as null.
    chunks = [[IngestItem.model_validate(it).model_dump(mode="json") for it in c] for c in chunks]
    new = [
        records.NewTask(
            str(uuid.uuid4()),
            {"collection": collection, "items": chunk},
            [(str(it.get("image_path") or it.get("text")), it.get("external_id")) for it in chunk],
        )
        for chunk in chunks
    ]
    with conn.transaction():
        records.create_job(conn, job_id=job_id, collection=collection, tasks=new)
    return [t.id for t in new]


def task_row(conn: psycopg.Connection, task_id: str) -> tuple[Any, ...]:
    row = conn.execute("SELECT state, attempts FROM ingest_tasks WHERE id = %s", (task_id,))
    return tuple(row.fetchone() or ())


def item_rows(conn: psycopg.Connection, task_id: str) -> list[tuple[Any, ...]]:
    """(external_id, status, attempts, error) of each item of the task, in order."""
    rows = conn.execute(
        "SELECT external_id, status, attempts, error FROM ingest_job_items"
        " WHERE task_id = %s ORDER BY index",
        (task_id,),
    )
    return [tuple(r) for r in rows.fetchall()]


def test_fresh_tasks_run_as_one_and_each_gets_its_own_result(
    tasks: IngestTasks, conn: psycopg.Connection, photos: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"not a JPEG")
    items = [
        {"image_path": str(photos["chelsea"]), "external_id": "cat"},
        {"image_path": str(bad), "external_id": "bad"},
        {"text": "a cup of coffee", "external_id": "coffee"},
    ]
    collection = fresh("together")
    ids = write_job(conn, collection, items)
    other = write_job(conn, f"{collection}-other", [{"text": "elsewhere"}])
    outcomes = tasks.run_together(ids + other)
    assert {outcomes[t] for t in ids + other} == {DONE}
    by_task = tasks.results(ids + other)
    results = [by_task[t] for t in ids + other]
    assert all(r is not None and len(r.items) == 1 for r in results), results
    items_ = [r.items[0] for r in results if r is not None]
    # Each task's result is its own item, indexed from the task's first, as alone.
    assert [i.index for i in items_] == [0, 0, 0, 0]
    assert [i.external_id for i in items_] == ["cat", "bad", "coffee", None]
    assert [i.status for i in items_] == ["stored", "failed", "stored", "stored"]
    assert "not a supported image" in (items_[1].error or "")
    assert [r.collection for r in results if r is not None] == [collection] * 3 + [
        f"{collection}-other"  # its own collection
    ]
    assert [task_row(conn, t) for t in ids + other] == [("done", 1)] * 4


def test_tasks_that_are_not_fresh_or_hold_a_video_are_left_to_run_alone(
    tasks: IngestTasks, conn: psycopg.Connection
) -> None:
    collection = fresh("alone")
    items = [{"text": "fresh"}, {"text": "attempted"}, {"video_path": "/nowhere/clip.mp4"}]
    fresh_task, attempted, video = write_job(conn, collection, items)
    conn.execute("UPDATE ingest_tasks SET attempts = 1 WHERE id = %s", (attempted,))
    unknown = f"unknown-{uuid.uuid4()}"
    outcomes = tasks.run_together([fresh_task, attempted, video, unknown])
    assert outcomes[fresh_task] == DONE
    assert [outcomes[t] for t in (attempted, video, unknown)] == [RUN_ALONE] * 3
    # untouched, and not left locked
    assert [task_row(conn, t) for t in (attempted, video)] == [("queued", 1), ("queued", 0)]
    assert claims.try_lock(conn, attempted) and claims.try_lock(conn, video)
    conn.execute("SELECT pg_advisory_unlock_all()")


def test_a_task_another_worker_holds_is_skipped(
    tasks: IngestTasks, conn: psycopg.Connection, urls: Urls
) -> None:
    (held,) = write_job(conn, fresh("held"), [{"text": "held"}])
    with psycopg.connect(records.psycopg_url(urls.database_url), autocommit=True) as holder:
        assert claims.try_lock(holder, held)
        assert tasks.run_together([held]) == {held: DUPLICATE}
        assert tasks.run_alone(held) == DUPLICATE
    assert task_row(conn, held) == ("queued", 0)


def test_a_chunk_that_fails_as_a_whole_runs_item_by_item_and_the_bad_item_fails_alone(
    tasks: IngestTasks, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One row the database refuses fails the chunk's one upsert, as a real refusal would.
    real_upsert = repository.upsert_items

    def refusing(
        *, session: Session, collection: Collection, rows: Sequence[repository.ItemRow]
    ) -> dict[str, int]:
        if any(row.external_id == "poison" for row in rows):
            raise RuntimeError("the database refused item poison")
        return real_upsert(session=session, collection=collection, rows=rows)

    monkeypatch.setattr(repository, "upsert_items", refusing)
    chunk = [
        {"text": "a first good caption", "external_id": "a"},
        {"text": "a poisoned caption", "external_id": "poison"},
        {"text": "a last good caption", "external_id": "b"},
    ]
    (task,) = write_tasks(conn, fresh("whole"), [chunk])
    assert tasks.run_alone(task) == DONE
    result = tasks.results([task])[task]
    assert [(i.index, i.external_id, i.status) for i in result.items] == [
        (0, "a", "stored"),
        (1, "poison", "failed"),
        (2, "b", "stored"),
    ]
    assert result.items[1].error == "internal error: RuntimeError: the database refused item poison"
    assert result.items[0].item_id is not None and result.items[2].item_id is not None
    assert task_row(conn, task) == ("done", 1)  # one attempt of the task...
    # ...in which each item, once the whole chunk failed, ran alone: one attempt each
    assert [row[:3] for row in item_rows(conn, task)] == [
        ("a", "stored", 1),
        ("poison", "failed", 1),
        ("b", "stored", 1),
    ]


def test_a_task_already_done_keeps_its_stored_result_without_running_again(
    tasks: IngestTasks, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    (task,) = write_tasks(conn, fresh("done"), [[{"text": "once", "external_id": "x"}]])
    assert tasks.run_alone(task) == DONE
    first = tasks.results([task])[task]
    assert [i.status for i in first.items] == ["stored"]

    def no_ingest(**kwargs: object) -> None:
        raise AssertionError("a task already done ran again")

    monkeypatch.setattr(ingest_tasks, "ingest", no_ingest)
    again = tasks.run_alone(task)  # a redelivered message, after the task ended
    assert again == DONE and tasks.results([task])[task] == first
    assert task_row(conn, task) == ("done", 1)  # no attempt counted
    assert [row[:3] for row in item_rows(conn, task)] == [("x", "stored", 0)]


def test_an_unknown_task_is_not_found(tasks: IngestTasks, conn: psycopg.Connection) -> None:
    unknown = f"unknown-{uuid.uuid4()}"
    with pytest.raises(NotFound, match=f"no ingest task {unknown} in the database"):
        tasks.run_alone(unknown)
    assert claims.try_lock(conn, unknown)  # its lock was freed
    conn.execute("SELECT pg_advisory_unlock_all()")
