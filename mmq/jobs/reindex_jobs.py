"""The start of a reindex, written by the producer (`mmq.Client.reindex`): the collection's
plan and an ingest job whose tasks re-embed the items that have no new vector yet. Plain
psycopg, as the other job records (mmq/jobs/records.py); the workers' side is in
mmq/services/reindex.py and mmq/store/reindex.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from psycopg import Connection

from mmq.errors import BadRequest, NotFound
from mmq.jobs import records


@dataclass(frozen=True)
class Started:
    job_id: str
    tasks: list[str]  # ids of the tasks to send; none when every item has its new vector
    from_model: str


def start(
    conn: Connection,
    *,
    collection: str,
    model: str,
    allow_missing: bool,
    chunk_size: int,
) -> Started:
    """Record the plan (or take over the collection's unfinished reindex to `model`,
    keeping the vectors it wrote) and its job. The caller commits, then sends the tasks
    and the finish task, all under the returned ids."""
    row = conn.execute(
        "SELECT id, model FROM collections WHERE name = %s FOR UPDATE", (collection,)
    ).fetchone()
    if row is None:
        raise NotFound(f"unknown collection {collection!r}")
    collection_id, current = row
    if current == model:
        raise BadRequest(f"collection {collection!r} already uses model {model}")
    previous = conn.execute(
        "SELECT model, state FROM reindexes WHERE collection_id = %s", (collection_id,)
    ).fetchone()
    if previous is None or previous[0] != model or previous[1] == "switched":
        # Vectors written for another model (or left by an older switch) are no use.
        for table in ("reindex_segments", "reindex_vectors"):
            conn.execute(f"DELETE FROM {table} WHERE collection_id = %s", (collection_id,))
    job_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO reindexes (collection_id, model, from_model, job_id, allow_missing)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (collection_id) DO UPDATE SET"
        " model = excluded.model, from_model = excluded.from_model, job_id = excluded.job_id,"
        " allow_missing = excluded.allow_missing, state = 'running', error = NULL,"
        " started_at = now(), ended_at = NULL",
        (collection_id, model, current, job_id, allow_missing),
    )
    # Items with a new vector for their current content are done; the worker that ends
    # the job checks the model version too, and re-embeds what this missed.
    todo = conn.execute(
        "SELECT i.id, coalesce(i.uri, left(i.text, 200), 'item ' || i.id), i.external_id"
        " FROM items i LEFT JOIN reindex_vectors r"
        " ON r.item_id = i.id AND r.content_hash = i.content_hash"
        " WHERE i.collection_id = %s AND r.item_id IS NULL ORDER BY i.id",
        (collection_id,),
    ).fetchall()
    tasks = [
        records.NewTask(
            id=str(uuid.uuid4()),
            request={
                "collection": collection,
                "reindex": {"model": model},
                "items": [{"item_id": item_id} for item_id, _, _ in chunk],
            },
            items=[(source, external_id) for _, source, external_id in chunk],
        )
        for chunk in (todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size))
    ]
    records.create_job(conn, job_id=job_id, collection=collection, tasks=tasks)
    return Started(job_id, [t.id for t in tasks], current)


def is_reindex(conn: Connection, job_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM reindexes WHERE job_id = %s", (job_id,)).fetchone()
    return row is not None
