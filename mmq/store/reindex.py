"""A collection's reindex in the database (migrations/versions/0010): its plan, the new
vectors kept beside the old ones, and the switch that puts them in place in one
transaction. The producer's side (the plan's start) is in mmq/jobs/reindex_jobs.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from mmq.store import repository
from mmq.store.segments import SegmentRow
from mmq.store.tables import Collection


@dataclass(frozen=True)
class Plan:
    collection_id: int
    model: str
    from_model: str
    job_id: str
    allow_missing: bool
    state: str  # running | waiting (items failed; the user decides) | switched


@dataclass(frozen=True)
class StoredItem:
    """What an item is re-embedded from."""

    id: int
    kind: str
    uri: str | None
    text: str | None
    external_id: str | None
    content_hash: str


@dataclass(frozen=True)
class NewVectors:
    item_id: int
    content_hash: str  # the item's, as it was embedded
    vector: np.ndarray
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None


def get_plan(*, session: Session, collection_id: int) -> Plan | None:
    row = session.execute(
        text(
            "SELECT collection_id, model, from_model, job_id, allow_missing, state "
            "FROM reindexes WHERE collection_id = :c"
        ),
        {"c": collection_id},
    ).first()
    return None if row is None else Plan(*row)


def end_plan(*, session: Session, collection_id: int, state: str, error: str | None) -> None:
    session.execute(
        text(
            "UPDATE reindexes SET state = :state, error = :error, ended_at = now() "
            "WHERE collection_id = :c"
        ),
        {"c": collection_id, "state": state, "error": error},
    )


def stored_items(
    *, session: Session, collection_id: int, ids: Sequence[int]
) -> dict[int, StoredItem]:
    rows = session.execute(
        text(
            "SELECT id, kind, uri, text, external_id, content_hash FROM items "
            "WHERE collection_id = :c AND id = ANY(:ids)"
        ),
        {"c": collection_id, "ids": list(ids)},
    ).all()
    return {row[0]: StoredItem(*row) for row in rows}


def write_vectors(
    *, session: Session, collection_id: int, model_version: str, rows: Sequence[NewVectors]
) -> None:
    """Insert or replace the items' new vectors."""
    if not rows:
        return
    stmt = text(
        "INSERT INTO reindex_vectors (item_id, collection_id, model_version, content_hash, "
        "vector, image_vector, text_vector) VALUES (:item, :c, :version, :hash, :v, :iv, :tv) "
        "ON CONFLICT (item_id) DO UPDATE SET model_version = excluded.model_version, "
        "content_hash = excluded.content_hash, vector = excluded.vector, "
        "image_vector = excluded.image_vector, text_vector = excluded.text_vector"
    ).bindparams(*(bindparam(name, type_=Vector()) for name in ("v", "iv", "tv")))
    params: list[dict[str, Any]] = [
        {
            "item": row.item_id,
            "c": collection_id,
            "version": model_version,
            "hash": row.content_hash,
            "v": row.vector,
            "iv": row.image_vector,
            "tv": row.text_vector,
        }
        for row in rows
    ]
    session.execute(stmt, params)


def write_segments(
    *, session: Session, collection_id: int, item_id: int, segments: Sequence[SegmentRow]
) -> None:
    """The video's new segments, in place of any written before."""
    session.execute(text("DELETE FROM reindex_segments WHERE item_id = :i"), {"i": item_id})
    if not segments:
        return
    stmt = text(
        "INSERT INTO reindex_segments (item_id, collection_id, ordinal, start_s, end_s, "
        "keyframe_s, vector) VALUES (:item, :c, :n, :start, :end, :key, :v)"
    ).bindparams(bindparam("v", type_=Vector()))
    session.execute(
        stmt,
        [
            {
                "item": item_id,
                "c": collection_id,
                "n": n,
                "start": s.start_s,
                "end": s.end_s,
                "key": s.keyframe_s,
                "v": s.vector,
            }
            for n, s in enumerate(segments)
        ],
    )


def without_new_vectors(*, session: Session, collection_id: int, model_version: str) -> list[int]:
    """The items that have no new vector of `model_version` for their current content:
    never embedded, or re-ingested since."""
    rows = session.execute(
        text(
            "SELECT i.id FROM items i LEFT JOIN reindex_vectors r ON r.item_id = i.id "
            "AND r.model_version = :version AND r.content_hash = i.content_hash "
            "WHERE i.collection_id = :c AND r.item_id IS NULL ORDER BY i.id"
        ),
        {"c": collection_id, "version": model_version},
    ).all()
    return [row[0] for row in rows]


def unfinished_tasks(*, session: Session, job_id: str) -> int:
    return int(
        session.scalar(
            text("SELECT count(*) FROM ingest_tasks WHERE job_id = :j AND state <> 'done'"),
            {"j": job_id},
        )
        or 0
    )


def count_items(*, session: Session, collection_id: int) -> int:
    found = session.scalar(
        text("SELECT count(*) FROM items WHERE collection_id = :c"), {"c": collection_id}
    )
    return int(found or 0)


def external_ids(*, session: Session, ids: Sequence[int]) -> dict[int, str | None]:
    rows = session.execute(
        text("SELECT id, external_id FROM items WHERE id = ANY(:ids)"), {"ids": list(ids)}
    ).all()
    return {int(i): e for i, e in rows}


def lock_collection(*, session: Session, collection_id: int) -> None:
    """Until the transaction ends, no ingest stores items in the collection (they take
    this row's lock in share mode before they write: services/ingest.py)."""
    session.execute(
        text("SELECT 1 FROM collections WHERE id = :c FOR UPDATE"), {"c": collection_id}
    )


def switch(
    *, session: Session, collection: Collection, model: str, model_version: str, dim: int
) -> bool:
    """Put every new vector in place of the old one, and bind the collection to `model`;
    returns whether the width changed (then the caller builds the new indexes after the
    commit: `repository.create_indexes`). The caller holds the collection's lock and
    commits. Searches read the old vectors until the commit, and the new ones after."""
    c = {"c": collection.id}
    resized = dim != collection.dim
    if resized:
        # The old indexes cast every row to the old width: they cannot take the new
        # vectors. Dropping them locks the tables until the commit (searches wait).
        for name in (
            repository.index_name(collection.id),
            repository.segment_index_name(collection.id),
        ):
            session.execute(text(f"DROP INDEX IF EXISTS {name}"))
    session.execute(
        text(
            "UPDATE items i SET vector = r.vector, image_vector = r.image_vector, "
            "text_vector = r.text_vector, model = :model, model_version = :version, dim = :dim "
            "FROM reindex_vectors r WHERE r.item_id = i.id AND i.collection_id = :c"
        ),
        c | {"model": model, "version": model_version, "dim": dim},
    )
    session.execute(text("DELETE FROM segments WHERE collection_id = :c"), c)
    session.execute(
        text(
            "INSERT INTO segments (item_id, collection_id, ordinal, start_s, end_s, keyframe_s, "
            "vector) SELECT item_id, collection_id, ordinal, start_s, end_s, keyframe_s, vector "
            "FROM reindex_segments WHERE collection_id = :c ORDER BY item_id, ordinal"
        ),
        c,
    )
    session.execute(
        text(
            "UPDATE collections SET model = :model, model_version = :version, dim = :dim "
            "WHERE id = :c"
        ),
        c | {"model": model, "version": model_version, "dim": dim},
    )
    # The old vectors were overwritten; the copies of the new ones go.
    session.execute(text("DELETE FROM reindex_segments WHERE collection_id = :c"), c)
    session.execute(text("DELETE FROM reindex_vectors WHERE collection_id = :c"), c)
    return resized
