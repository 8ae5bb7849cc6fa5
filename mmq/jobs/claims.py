"""What workers write into the job records: locks, claims, each item's end, the task's end.

A worker runs a task under a session-level advisory lock (held while it runs, freed if its
process dies), claims it (one more attempt, state running), and records each item's end in
the transaction that stores the item, so an item is never stored without its end or ended
without being stored. The job records themselves: `mmq/jobs/records.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from psycopg import Connection
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mmq.schemas import ItemResult

# (task id, job-wide index) of an item.
Origin = tuple[str, int]


@dataclass(frozen=True)
class Claim:
    request: dict[str, Any]
    first_index: int
    attempts: int  # this one included
    done: bool
    pending: list[int]  # chunk-local indexes of the items with no end yet


def session_conn(session: Session) -> Connection:
    """The session's own psycopg connection: job rows commit in the same transaction as the
    items. Asked for again after every commit, which hands the connection back to the pool."""
    return cast(Connection, session.connection().connection.driver_connection)


@contextmanager
def locked_tasks(engine: Engine, task_ids: Sequence[str]) -> Iterator[list[str]]:
    """The tasks of `task_ids` that no other live worker holds, locked until the block ends.

    The locks live on a pooled connection of their own, outside any transaction (a new
    connection per task would cost a server process each). They are all freed before the
    connection goes back to the pool; if that fails (an error, or a time limit raised right
    there), the connection is closed instead, which frees them too: a pooled connection
    never keeps a task locked."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pooled:
        conn = cast(Connection, pooled.connection.driver_connection)
        try:
            yield try_lock_many(conn, list(dict.fromkeys(task_ids)))
        finally:
            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except BaseException:
                pooled.invalidate()
                raise


def try_lock(conn: Connection, task_id: str) -> bool:
    """A session-level lock on one task; False if another session holds it."""
    rows = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (task_id,))
    return bool(rows.fetchall()[0][0])


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


def claim_task(conn: Connection, task_id: str) -> Claim | None:
    """Count one more attempt of any task not done and mark it running (the caller
    commits); None if the task does not exist."""
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


def forgive_attempt(conn: Connection, task_id: str) -> None:
    """Take back the task's last attempt: PostgreSQL went away during it, which says
    nothing of its items. Its first attempt taken back, the next one is a first again."""
    conn.execute(
        "UPDATE ingest_tasks SET attempts = greatest(attempts - 1, 0),"
        " state = CASE WHEN state = 'done' THEN 'done' ELSE 'queued' END"
        " WHERE id = %s AND state <> 'done'",
        (task_id,),
    )


def claim_fresh(conn: Connection, task_ids: Sequence[str]) -> dict[str, Claim]:
    """`claim_task` for those of the tasks never attempted, in one statement (the caller
    commits). Tasks already attempted or done need `claim_task`'s bookkeeping, and tasks
    with a video a thread of their own: those are left unclaimed."""
    rows = conn.execute(
        "WITH claimed AS (UPDATE ingest_tasks SET attempts = 1, state = 'running',"
        " started_at = now() WHERE id = ANY(%s) AND attempts = 0 AND state <> 'done'"
        # A stored item names every field, the ones it does not use as null.
        " AND NOT jsonb_path_exists(request,"
        " '$.items[*] ? (@.video_path != null || @.video_bytes != null)')"
        " RETURNING id, request, first_index)"
        " SELECT c.id, c.request, c.first_index, ARRAY(SELECT i.index - c.first_index"
        " FROM ingest_job_items i WHERE i.task_id = c.id AND i.status = 'pending'"
        " ORDER BY i.index) FROM claimed c",
        (list(task_ids),),
    ).fetchall()
    return {
        task_id: Claim(request, first, 1, False, list(pending))
        for task_id, request, first, pending in rows
    }


def count_attempt(conn: Connection, origin: Origin) -> int:
    """One more attempt for this item; returns its count."""
    task_id, index = origin
    rows = conn.execute(
        "UPDATE ingest_job_items SET attempts = attempts + 1"
        " WHERE task_id = %s AND index = %s RETURNING attempts",
        (task_id, index),
    ).fetchall()
    return int(rows[0][0]) if rows else 0


def record_ends(
    conn: Connection, ends: Sequence[tuple[Origin, ItemResult]], finish: Sequence[str] = ()
) -> None:
    """Each item's end, where none was recorded yet, and the end of the `finish` tasks, in
    one statement (the caller commits with the items).

    An end is written once: in the transaction of the upsert that stored the item, so a
    `replaced` recorded here is that of the first upsert that committed. A later attempt
    finds the item ended and does not store it again (nor overwrite its end)."""
    rows = [
        (t, i, r.status, r.error, r.item_id, r.replaced, r.duration_s, r.segments)
        for (t, i), r in ends
    ]
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(8)]
    conn.execute(
        "WITH ends AS (UPDATE ingest_job_items i SET status = e.status, error = e.error,"
        " item_id = e.item_id, replaced = e.replaced, duration_s = e.duration_s,"
        " segments = e.segments FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[],"
        " %s::bigint[], %s::bool[], %s::float8[], %s::int[])"
        " AS e(task_id, index, status, error, item_id, replaced, duration_s, segments)"
        " WHERE i.task_id = e.task_id AND i.index = e.index AND i.status = 'pending')"
        " UPDATE ingest_tasks SET state = 'done', finished_at = now() WHERE id = ANY(%s)",
        [*columns, list(finish)],
    )


def fail_pending(conn: Connection, origins: Sequence[Origin], error: str) -> None:
    """These items end failed with `error`, unless they already ended."""
    with conn.cursor() as cur:
        cur.executemany(
            "UPDATE ingest_job_items SET status = 'failed', error = %s"
            " WHERE task_id = %s AND index = %s AND status = 'pending'",
            [(error, task_id, index) for task_id, index in origins],
        )


def note_error(conn: Connection, origin: Origin, error: str) -> None:
    """Keep an unfinished attempt's error on a pending item, for its quarantine message."""
    conn.execute(
        "UPDATE ingest_job_items SET error = %s WHERE task_id = %s AND index = %s", (error, *origin)
    )


def last_error(conn: Connection, origin: Origin) -> str | None:
    row = conn.execute(
        "SELECT error FROM ingest_job_items WHERE task_id = %s AND index = %s", origin
    ).fetchone()
    return None if row is None else row[0]


def finish_tasks(conn: Connection, task_ids: Sequence[str]) -> None:
    conn.execute(
        "UPDATE ingest_tasks SET state = 'done', finished_at = now() WHERE id = ANY(%s)",
        (list(task_ids),),
    )


def stale_tasks(conn: Connection, *, queued_after_s: float) -> list[tuple[str, str | None]]:
    """The unfinished tasks sent over `queued_after_s` ago, oldest first: each one's id and,
    for a reindex's task, the model whose workers alone can run it."""
    rows = conn.execute(
        "SELECT id, request -> 'reindex' ->> 'model' FROM ingest_tasks WHERE state <> 'done'"
        " AND sent_at < now() - make_interval(secs => %s) ORDER BY sent_at",
        (queued_after_s,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def mark_sent(conn: Connection, task_id: str) -> None:
    conn.execute("UPDATE ingest_tasks SET sent_at = now() WHERE id = %s", (task_id,))
