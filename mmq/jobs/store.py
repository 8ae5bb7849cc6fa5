"""SQL over the job tables (migrations/versions/0003), on a plain psycopg connection.

Producers write a job and its tasks before they send any message; workers claim a task,
record each item's end in the same transaction that stores it, and mark the task done.
Plain psycopg, not the ORM: `mmq.client` uses it, and a producer must stay light.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from mmq.schemas import IngestResult, ItemResult, JobState, JobStatus


def psycopg_url(url: str) -> str:
    """A SQLAlchemy-style URL (postgresql+psycopg://) → the libpq URL psycopg takes."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass(frozen=True)
class NewTask:
    id: str
    request: dict[str, Any]  # an IngestRequest, as JSON
    items: list[tuple[str, str | None]]  # (source, external_id) of each item


@dataclass(frozen=True)
class Claim:
    request: dict[str, Any]
    first_index: int
    attempts: int  # this one included
    done: bool
    pending: list[int]  # chunk-local indexes of the items with no end yet


def create_job(conn: Connection, *, job_id: str, collection: str, tasks: Sequence[NewTask]) -> None:
    """Insert the job, its tasks and an item row per item (the caller commits)."""
    total = sum(len(t.items) for t in tasks)
    conn.execute(
        "INSERT INTO ingest_jobs (id, collection, total_items) VALUES (%s, %s, %s)",
        (job_id, collection, total),
    )
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
    return (
        conn.execute("SELECT 1 FROM ingest_tasks WHERE id = %s", (task_id,)).fetchone() is not None
    )


def job_collection(conn: Connection, job_id: str) -> str | None:
    row = conn.execute("SELECT collection FROM ingest_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else str(row[0])


def job_status(conn: Connection, job_id: str) -> JobStatus:
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state = 'done'),"
        " count(*) FILTER (WHERE state = 'running' OR attempts > 0)"
        " FROM ingest_tasks WHERE job_id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    total, done, taken = row
    if total == 0:
        raise KeyError(f"no ingest job {job_id}")
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
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE status <> 'pending'), count(*)"
        " FROM ingest_job_items WHERE job_id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def item_results(
    conn: Connection, *, job_id: str | None = None, task_id: str | None = None, offset: int = 0
) -> list[ItemResult]:
    """The items of a job, or of one of its tasks (indexed from `offset`), in order."""
    where, args = ("task_id = %s", (task_id,)) if task_id else ("job_id = %s", (job_id,))
    rows = conn.execute(
        f"SELECT index - %s, {_ITEM_COLUMNS} FROM ingest_job_items WHERE {where} ORDER BY index",
        (offset, *args),
    ).fetchall()
    return [_item_result(row) for row in rows]


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


_ITEM_COLUMNS = "source, external_id, status, item_id, error, duration_s, segments"


def _item_result(row: Sequence[Any]) -> ItemResult:
    index, source, external_id, status, item_id, error, duration_s, segments = row
    return ItemResult(
        index=index,
        source=source,
        external_id=external_id,
        # Still pending is only seen while the job runs; report it as not stored yet.
        status="stored" if status == "stored" else "failed",
        item_id=item_id,
        error=error if status != "pending" else "not finished yet",
        duration_s=duration_s,
        segments=segments,
    )


def job_result(conn: Connection, job_id: str) -> IngestResult:
    collection = job_collection(conn, job_id)
    if collection is None:
        raise KeyError(f"no ingest job {job_id}")
    return IngestResult(collection=collection, items=item_results(conn, job_id=job_id))


# Workers.


def try_lock(conn: Connection, task_id: str) -> bool:
    """A session-level lock: held while a worker runs the task, freed if its process dies."""
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (task_id,))
    return bool(row.fetchone()[0])  # type: ignore[index]


def try_lock_many(conn: Connection, task_ids: Sequence[str]) -> list[str]:
    """`try_lock` for several tasks in one round trip; returns those now locked."""
    rows = conn.execute(
        "SELECT id FROM unnest(%s::text[]) AS id"
        " WHERE pg_try_advisory_lock(hashtextextended(id, 0))",
        (list(task_ids),),
    ).fetchall()
    return [r[0] for r in rows]


def unlock(conn: Connection, task_id: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (task_id,))


def unlock_all(conn: Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock_all()")


def claim_task(conn: Connection, task_id: str) -> Claim | None:
    """Count one more attempt and mark the task running (the caller commits)."""
    row = conn.execute(
        "UPDATE ingest_tasks SET attempts = attempts + (state <> 'done')::int,"
        " state = CASE WHEN state = 'done' THEN 'done' ELSE 'running' END,"
        " started_at = now() WHERE id = %s RETURNING request, first_index, attempts, state",
        (task_id,),
    ).fetchone()
    if row is None:
        return None
    request, first_index, attempts, state = row
    pending = conn.execute(
        "SELECT index - %s FROM ingest_job_items WHERE task_id = %s AND status = 'pending'"
        " ORDER BY index",
        (first_index, task_id),
    ).fetchall()
    return Claim(request, first_index, attempts, state == "done", [p[0] for p in pending])


def claim_fresh(conn: Connection, task_ids: Sequence[str]) -> dict[str, Claim]:
    """`claim_task` for the tasks never attempted, in two statements (the caller commits).
    Tasks already attempted or done need `claim_task`'s bookkeeping, and tasks with a video
    a thread of their own: those are left alone."""
    rows = conn.execute(
        "UPDATE ingest_tasks SET attempts = 1, state = 'running', started_at = now()"
        " WHERE id = ANY(%s) AND attempts = 0 AND state <> 'done'"
        " AND NOT jsonb_path_exists(request, '$.items[*].video_path')"
        " RETURNING id, request, first_index",
        (list(task_ids),),
    ).fetchall()
    claims = {task_id: Claim(request, first, 1, False, []) for task_id, request, first in rows}
    for task_id, local in conn.execute(
        "SELECT i.task_id, i.index - t.first_index FROM ingest_job_items i"
        " JOIN ingest_tasks t ON t.id = i.task_id"
        " WHERE i.task_id = ANY(%s) AND i.status = 'pending' ORDER BY i.index",
        (list(claims),),
    ):
        claims[task_id].pending.append(local)
    return claims


def count_attempt(conn: Connection, *, task_id: str, first_index: int, local: Sequence[int]) -> int:
    """One more attempt for these items; returns the highest count among them."""
    row = conn.execute(
        "WITH bumped AS (UPDATE ingest_job_items SET attempts = attempts + 1"
        " WHERE task_id = %s AND index = ANY(%s) RETURNING attempts)"
        " SELECT coalesce(max(attempts), 0) FROM bumped",
        (task_id, [first_index + i for i in local]),
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_items(
    conn: Connection, *, task_id: str, first_index: int, results: Sequence[ItemResult]
) -> None:
    """Each item's end, where none was recorded yet (the caller commits with the items)."""
    record_ends(conn, [(task_id, first_index + r.index, r) for r in results])


def record_ends(conn: Connection, ends: Sequence[tuple[str, int, ItemResult]]) -> None:
    """`record_items` for items of any tasks: (task id, job-wide index, its end)."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE ingest_job_items SET status = %s, error = %s, item_id = %s,"
            " duration_s = %s, segments = %s"
            " WHERE task_id = %s AND index = %s AND status = 'pending'",
            [
                (r.status, r.error, r.item_id, r.duration_s, r.segments, task_id, index)
                for task_id, index, r in ends
            ],
        )


def finish_tasks(conn: Connection, task_ids: Sequence[str]) -> None:
    conn.execute(
        "UPDATE ingest_tasks SET state = 'done', finished_at = now() WHERE id = ANY(%s)",
        (list(task_ids),),
    )


def stale_tasks(conn: Connection, *, queued_after_s: float) -> list[str]:
    """Ids of the unfinished tasks sent over `queued_after_s` ago, oldest first."""
    rows = conn.execute(
        "SELECT id FROM ingest_tasks WHERE state <> 'done'"
        " AND sent_at < now() - make_interval(secs => %s) ORDER BY sent_at",
        (queued_after_s,),
    ).fetchall()
    return [r[0] for r in rows]


def mark_sent(conn: Connection, task_id: str) -> None:
    conn.execute("UPDATE ingest_tasks SET sent_at = now() WHERE id = %s", (task_id,))


def fail_items(
    conn: Connection, *, task_id: str, first_index: int, local: Sequence[int], error: str
) -> None:
    conn.execute(
        "UPDATE ingest_job_items SET status = 'failed', error = %s"
        " WHERE task_id = %s AND index = ANY(%s) AND status = 'pending'",
        (error, task_id, [first_index + i for i in local]),
    )


def note_error(conn: Connection, *, task_id: str, first_index: int, local: int, error: str) -> None:
    """Keep an unfinished attempt's error on a pending item, for its quarantine message."""
    conn.execute(
        "UPDATE ingest_job_items SET error = %s WHERE task_id = %s AND index = %s",
        (error, task_id, first_index + local),
    )


def last_error(conn: Connection, *, task_id: str, first_index: int, local: int) -> str | None:
    row = conn.execute(
        "SELECT error FROM ingest_job_items WHERE task_id = %s AND index = %s",
        (task_id, first_index + local),
    ).fetchone()
    return None if row is None else row[0]
