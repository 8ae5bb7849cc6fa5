"""An ingest says which items replaced one: `ItemResult.replaced`, from the upsert that
stored the item (mmq/store/repository.py) to the job records and the Client's result."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.client import Client, IngestJob
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.encoders import Encoder
from mmq.jobs import claims, records
from mmq.schemas import IngestItem, IngestResult
from mmq.services.ingest_tasks import DONE, IngestTasks
from mmq.store import repository
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.tables import Collection, Item
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow


def flags(result: IngestResult) -> list[tuple[str, bool]]:
    return [(r.status, r.replaced) for r in result.items]


# Through the workers, as a user ingests.


def test_a_second_image_under_the_same_id_reports_replaced(
    client: Client, workers: Procs, photos: dict[str, Path], db_session: Session
) -> None:
    # The issue: trip1/IMG_0001.jpg and then trip2/IMG_0001.jpg, each folder ingested alone.
    name = fresh("replaced")
    cat = IngestItem(image_path=str(photos["chelsea"]), external_id="IMG_0001.jpg")
    first = client.ingest([cat], collection=name).result(timeout=120)
    rocket = IngestItem(image_path=str(photos["rocket"]), external_id="IMG_0001.jpg")
    job = client.ingest([rocket], collection=name)
    second = job.result(timeout=120)
    assert flags(first) == [("stored", False)] and first.replaced == 0
    assert flags(second) == [("stored", True)] and (second.stored, second.replaced) == (1, 1)
    assert second.items[0].item_id == first.items[0].item_id
    db_session.rollback()
    (row,) = db_session.scalars(select(Item).join(Collection).where(Collection.name == name)).all()
    assert row.uri == str(photos["rocket"].resolve())  # only the rocket is left
    again = client.job(job.id)
    assert isinstance(again, IngestJob) and again.result(timeout=5) == second


def test_a_pair_reingested_as_an_image_reports_replaced(
    client: Client, workers: Procs, photos: dict[str, Path]
) -> None:
    name = fresh("replaced")
    pair = IngestItem(image_path=str(photos["coffee"]), text="a cup", external_id="coffee.jpg")
    client.ingest([pair], collection=name).result(timeout=120)
    alone = IngestItem(image_path=str(photos["coffee"]), external_id="coffee.jpg")
    assert flags(client.ingest([alone], collection=name).result(timeout=120)) == [("stored", True)]
    hit = client.search(collection=name, text="a cup").result(timeout=60).hits[0]
    assert (hit.kind, hit.text) == ("image", None)


def test_videos_report_replaced_as_other_items_do(
    client: Client, workers: Procs, photos: dict[str, Path]
) -> None:
    from tests.support.videos import video_bytes

    name = fresh("replaced")
    clip = IngestItem(video_bytes=video_bytes(seconds=2), external_id="clip.mp4")
    first = client.ingest([clip], collection=name).result(timeout=120)
    again = client.ingest([clip], collection=name).result(timeout=120)
    image = IngestItem(image_path=str(photos["coins"]), external_id="clip.mp4")
    as_image = client.ingest([image], collection=name).result(timeout=120)
    assert flags(first) == [("stored", False)] and first.items[0].segments
    assert flags(again) == [("stored", True)] and flags(as_image) == [("stored", True)]
    assert first.items[0].item_id == again.items[0].item_id == as_image.items[0].item_id


def test_the_same_key_twice_in_one_job_replaces_as_if_stored_in_order(
    client: Client, workers: Procs
) -> None:
    name = fresh("replaced")
    valid = [
        IngestItem(text="first words", external_id="x"),
        IngestItem(text="a caption without an id"),
        IngestItem(text="last words", external_id="x"),  # the one kept
        IngestItem(text="a caption without an id"),  # same content hash, same key
    ]
    one_task = client.ingest(valid, collection=name).result(timeout=120)
    assert [r.replaced for r in one_task.items] == [False, False, True, True]
    assert one_task.items[0].item_id == one_task.items[2].item_id
    # Again, one item per task: every key had an item.
    again = client.ingest(valid, collection=name, chunk_size=1).result(timeout=120)
    assert flags(again) == [("stored", True)] * 4 and again.replaced == 4
    # New keys in tasks of their own: whichever task stores first inserts.
    other = fresh("replaced")
    split = client.ingest(valid[:3], collection=other, chunk_size=1).result(timeout=120)
    assert sorted(r.replaced for r in split.items if r.external_id == "x") == [False, True]


def test_a_message_delivered_again_keeps_the_first_answer(
    client: Client, workers: Procs, urls: Urls
) -> None:
    name = fresh("replaced")
    client.ingest([IngestItem(text="was here", external_id="old")], collection=name).result(120)
    items = [
        IngestItem(text="new here", external_id="new"),
        IngestItem(text="again", external_id="old"),
    ]
    job = client.ingest(items, collection=name)
    first = job.result(timeout=120)
    assert flags(first) == [("stored", False), ("stored", True)]
    with connect(urls.database_url) as conn:
        (task_id,) = [
            r[0] for r in conn.execute("SELECT id FROM ingest_tasks WHERE job_id = %s", (job.id,))
        ]
    sent = client.app.send_task(
        INGEST_TASK, args=[{"task_id": task_id}], queue=INGEST_QUEUE, task_id=task_id
    )
    # Stored by the first delivery, "new" is not reported as replacing itself.
    assert flags(IngestResult.model_validate(sent.get(timeout=60))) == flags(first)
    assert client.job(job.id).result(timeout=5) == first


# In-process attempts (mmq/services/ingest_tasks.py) with a fault at a chosen point.


@pytest.fixture()
def tasks(urls: Urls, encoder: Encoder, settings: Settings) -> Iterator[IngestTasks]:
    engine = make_engine(urls.database_url, pool_size=2)
    yield IngestTasks(encoder, engine, make_sessionmaker(engine), settings)
    engine.dispose()


@pytest.fixture()
def conn(urls: Urls) -> Iterator[psycopg.Connection[Any]]:
    with connect(urls.database_url) as c:
        yield c


def write_task(conn: psycopg.Connection[Any], collection: str, items: list[dict[str, Any]]) -> str:
    task = records.NewTask(
        str(uuid.uuid4()),
        {"collection": collection, "items": items},
        [(str(it["text"]), it.get("external_id")) for it in items],
    )
    with conn.transaction():
        records.create_job(conn, job_id=str(uuid.uuid4()), collection=collection, tasks=[task])
    return task.id


def fail_once(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The first call of `claims.<name>` fails, as a worker dying right there would."""
    real = getattr(claims, name)
    calls: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"the worker died in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(claims, name, failing)


def test_an_upsert_rolled_back_is_not_the_first_one(
    tasks: IngestTasks, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chunk's upsert runs, then recording its ends fails: the transaction rolls back,
    # and the items, stored one at a time, are inserted then, not replaced.
    collection = fresh("rolled")
    task = write_task(conn, collection, [{"text": "one", "external_id": "a"}, {"text": "two"}])
    fail_once(monkeypatch, "record_ends")
    assert tasks.run_alone(task) == DONE
    assert flags(tasks.results([task])[task]) == [("stored", False), ("stored", False)]


def test_a_task_run_again_after_its_items_committed_keeps_their_answer(
    tasks: IngestTasks, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The items and their ends commit; the worker dies before the task's end. The next
    # attempt finds the items ended: it stores nothing again and reports what was recorded.
    collection = fresh("again")
    tasks.run_alone(write_task(conn, collection, [{"text": "before", "external_id": "old"}]))
    task = write_task(
        conn,
        collection,
        [{"text": "new", "external_id": "new"}, {"text": "after", "external_id": "old"}],
    )
    fail_once(monkeypatch, "finish_tasks")
    with pytest.raises(RuntimeError, match="died in finish_tasks"):
        tasks.run_alone(task)
    assert tasks.run_alone(task) == DONE
    assert flags(tasks.results([task])[task]) == [("stored", False), ("stored", True)]
    rows = conn.execute(
        "SELECT i.external_id, i.created_at = i.updated_at FROM items i"
        " JOIN collections c ON c.id = i.collection_id WHERE c.name = %s ORDER BY i.id",
        (collection,),
    ).fetchall()
    assert rows == [("old", False), ("new", True)]  # "new" was written once
    assert conn.execute("SELECT attempts FROM ingest_tasks WHERE id = %s", (task,)).fetchone() == (
        2,
    )


# The repository: PostgreSQL tells an insert from an update, page by page.


def test_upsert_tells_inserted_from_replaced_across_insertmanyvalues_pages(
    db_session: Session,
) -> None:
    dim = 4
    collection = repository.ensure_collection(
        session=db_session,
        name=fresh("xmax"),
        model="synthetic",
        model_version="1",
        dim=dim,
        fusion="sum",
    )
    db_session.commit()
    vector = np.ones(dim, dtype=np.float32) / 2

    def rows(keys: range) -> list[repository.ItemRow]:
        return [
            repository.ItemRow(f"ext:{i}", str(i), "text", None, str(i), {}, str(i), vector)
            for i in keys
        ]

    existing = range(0, 2500, 3)
    assert (
        repository.upsert_items(
            session=db_session, collection=collection, rows=rows(existing)
        ).replaced
        == frozenset()
    )
    db_session.commit()
    inserts: list[str] = []
    engine = db_session.get_bind()

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO items"):
            inserts.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        ids = repository.upsert_items(
            session=db_session, collection=collection, rows=rows(range(2500))
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    db_session.commit()
    print(f"\n2500 rows upserted in {len(inserts)} INSERT statements")
    assert len(inserts) >= 3  # several multi-row statements ("insertmanyvalues" pages)
    assert len(ids) == 2500
    assert ids.replaced == frozenset(f"ext:{i}" for i in existing)
    # One statement cannot touch a row twice: the last of a key wins, and it is new.
    twice = repository.upsert_items(
        session=db_session, collection=collection, rows=rows(range(9000, 9001)) * 2
    )
    assert (len(twice), twice.replaced) == (1, frozenset())
    db_session.rollback()
