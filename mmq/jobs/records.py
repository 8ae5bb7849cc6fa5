"""Ingest job records in PostgreSQL (migrations/versions/0003, 0005): written by producers, read
by everyone. Plain psycopg, not the ORM: `mmq.client` uses this, and a producer stays light.

A job is split into tasks (one message each, whose id is the task's id); each task keeps
its request, and each item has a row that ends `stored` (with its item id, and whether it
replaced an item) or `failed` (with its error). What workers write into these rows is in
`mmq/jobs/claims.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from mmq.errors import NotFound
from mmq.schemas import IngestResult, ItemResult, JobState, JobStatus


def psycopg_url(url: str) -> str:
    """A SQLAlchemy-style URL (postgresql+psycopg://) → the libpq URL psycopg takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass(frozen=True)
class NewTask:
    id: str
    request: dict[str, Any]  # an IngestRequest, as JSON
    items: list[tuple[str, str | None]]  # (source, external_id) of each item


def create_job(conn: Connection, *, job_id: str, collection: str, tasks: Sequence[NewTask]) -> None:
    """Insert the job, its tasks and an item row per item (the caller commits)."""
    conn.execute("INSERT INTO ingest_jobs (id, collection) VALUES (%s, %s)", (job_id, collection))
    first = 0
    with conn.cursor() as cur:
        for ordinal, task in enumerate(tasks):
            cur.execute(
                "INSERT INTO ingest_tasks (id, job_id, ordinal, first_index, request)"
                " VALUES (%s, %s, %s, %s, %s)",
                (task.id, job_id, ordinal, first, Jsonb(task.request)),
            )
            cur.executemany(
                "INSERT INTO ingest_job_items (job_id, index, task_id, source, external_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                [
                    (job_id, first + i, task.id, source, external_id)
                    for i, (source, external_id) in enumerate(task.items)
                ],
            )
            first += len(task.items)


def task_exists(conn: Connection, task_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM ingest_tasks WHERE id = %s", (task_id,)).fetchone()
    return row is not None


def job_collection(conn: Connection, job_id: str) -> str | None:
    row = conn.execute("SELECT collection FROM ingest_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def job_status(conn: Connection, job_id: str) -> JobStatus:
    # An aggregate without GROUP BY always returns its one row.
    total, done, taken = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state = 'done'),"
        " count(*) FILTER (WHERE state = 'running' OR attempts > 0)"
        " FROM ingest_tasks WHERE job_id = %s",
        (job_id,),
    ).fetchall()[0]
    if total == 0:
        raise NotFound(f"no ingest job {job_id}")
    error = conn.execute(
        "SELECT error FROM ingest_job_items WHERE job_id = %s AND status = 'failed'"
        " ORDER BY index LIMIT 1",
        (job_id,),
    ).fetchone()
    state: JobState = "done" if done == total else "running" if taken or done else "queued"
    return JobStatus(
        id=job_id,
        state=state,
        error=None if error is None else error[0],
        done_tasks=done,
        total_tasks=total,
    )


def job_progress(conn: Connection, job_id: str) -> tuple[int, int]:
    """(items that ended, all items)."""
    ended, total = conn.execute(
        "SELECT count(*) FILTER (WHERE status <> 'pending'), count(*)"
        " FROM ingest_job_items WHERE job_id = %s",
        (job_id,),
    ).fetchall()[0]
    return int(ended), int(total)


def job_result(conn: Connection, job_id: str) -> IngestResult:
    collection = job_collection(conn, job_id)
    if collection is None:
        raise NotFound(f"no ingest job {job_id}")
    rows = conn.execute(
        f"SELECT index, {_ITEM_COLUMNS} FROM ingest_job_items WHERE job_id = %s ORDER BY index",
        (job_id,),
    ).fetchall()
    return IngestResult(collection=collection, items=[_item_result(row) for row in rows])


def task_results(conn: Connection, task_ids: Sequence[str]) -> dict[str, IngestResult]:
    """Each task's result, its items indexed from the task's first, in one query."""
    results = {t: IngestResult(collection="", items=[]) for t in task_ids}
    rows = conn.execute(
        "SELECT i.task_id, t.request ->> 'collection', i.index - t.first_index,"
        f" {', '.join('i.' + c for c in _ITEM_COLUMNS.split(', '))}"
        " FROM ingest_job_items i JOIN ingest_tasks t ON t.id = i.task_id"
        " WHERE i.task_id = ANY(%s) ORDER BY i.index",
        (list(task_ids),),
    ).fetchall()
    for task_id, collection, *row in rows:
        results[task_id].collection = collection or ""
        results[task_id].items.append(_item_result(row))
    return results


_ITEM_COLUMNS = "source, external_id, status, item_id, replaced, error, duration_s, segments"


def _item_result(row: Sequence[Any]) -> ItemResult:
    index, source, external_id, status, item_id, replaced, error, duration_s, segments = row
    return ItemResult(
        index=index,
        source=source,
        external_id=external_id,
        # Still pending is only seen while the job runs; report it as not stored yet.
        status="stored" if status == "stored" else "failed",
        item_id=item_id,
        replaced=replaced,
        error=error if status != "pending" else "not finished yet",
        duration_s=duration_s,
        segments=segments,
    )
