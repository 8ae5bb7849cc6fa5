"""What the collections hold, read straight from PostgreSQL by producers (`mmq collections`,
`mmq get`, `Client.collections()`, `Client.get()`): no queue, no worker, no model. Plain
psycopg, not the ORM, so that `mmq.client` stays light (tests/test_imports.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection

from mmq.errors import BadRequest, NotFound

# Sizes per collection: its rows' and its two HNSW indexes' (mmq/store/repository.py
# names them items_hnsw_c<id> and segments_hnsw_c<id>).
_COLLECTIONS_SQL = """
WITH chosen AS (
    SELECT * FROM collections WHERE %(names)s::text[] IS NULL OR name = ANY(%(names)s)
), per_kind AS (
    SELECT i.collection_id, i.kind, count(*) AS n, sum(pg_column_size(i.*)) AS bytes,
           max(i.updated_at) AS updated_at
    FROM items i JOIN chosen c ON c.id = i.collection_id GROUP BY 1, 2
), item_totals AS (
    SELECT collection_id, jsonb_object_agg(kind, n) AS counts, sum(bytes) AS bytes,
           max(updated_at) AS updated_at
    FROM per_kind GROUP BY 1
), segment_totals AS (
    SELECT s.collection_id, sum(pg_column_size(s.*)) AS bytes
    FROM segments s JOIN chosen c ON c.id = s.collection_id GROUP BY 1
)
SELECT c.name, c.model, c.model_version, c.fusion, c.dim, c.created_at,
       coalesce(t.counts, '{}'::jsonb), t.updated_at,
       coalesce(t.bytes, 0) + coalesce(g.bytes, 0),
       coalesce(pg_relation_size(to_regclass('items_hnsw_c' || c.id)), 0)
         + coalesce(pg_relation_size(to_regclass('segments_hnsw_c' || c.id)), 0),
       r.model, r.state, r.job_id, r.error
FROM chosen c
LEFT JOIN item_totals t ON t.collection_id = c.id
LEFT JOIN segment_totals g ON g.collection_id = c.id
LEFT JOIN reindexes r ON r.collection_id = c.id AND r.state <> 'switched'
ORDER BY c.name
"""


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as `mmq collections` shows it. `size_bytes` is `rows_bytes` (the sum of
    `pg_column_size` of its item and segment rows: their stored size, vectors included,
    an estimate that leaves out page and tuple overhead) plus `index_bytes` (the on-disk
    size of its HNSW indexes over items and segments). `updated_at`: the last time an item
    was stored or replaced (None while it holds none)."""

    name: str
    model: str
    model_version: str
    fusion: str
    dim: int
    counts: dict[str, int]  # items per kind; kinds it holds none of are left out
    created_at: datetime
    updated_at: datetime | None
    rows_bytes: int
    index_bytes: int
    # A reindex not switched yet (mmq reindex): its model, state (running, or waiting for a
    # decision on items that failed), job id and error; None when there is none.
    reindex: dict[str, str | None] | None = None

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    @property
    def size_bytes(self) -> int:
        return self.rows_bytes + self.index_bytes

    def as_json(self) -> dict[str, Any]:
        out = asdict(self) | {"items": self.items, "size_bytes": self.size_bytes}
        return out | {"created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class SegmentInfo:
    ordinal: int
    start_s: float
    end_s: float
    keyframe_s: float


@dataclass(frozen=True)
class ItemInfo:
    """One stored item, without its vectors; a video with its segments (in order)."""

    item_id: int
    collection: str
    external_id: str | None
    kind: str
    uri: str | None
    text: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    duration_s: float | None = None
    segments: list[SegmentInfo] | None = None  # videos only

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def collections(conn: Connection, names: Sequence[str] | None = None) -> list[CollectionInfo]:
    """Every collection (or those among `names` that exist), by name. Reads every row of
    them: seconds for millions of items."""
    rows = conn.execute(_COLLECTIONS_SQL, {"names": None if names is None else list(names)})
    found = []
    for name, model, version, fusion, dim, created, counts, updated, *sizes, r1, r2, r3, r4 in rows:
        rows_b, index_b = (int(size) for size in sizes)
        found.append(
            CollectionInfo(
                name,
                model,
                version,
                fusion,
                dim,
                dict(counts),
                created,
                updated,
                rows_b,
                index_b,
                _reindex(r1, r2, r3, r4),
            )  # fmt: skip
        )
    return found


def _reindex(
    model: str | None, state: str | None, job_id: str | None, error: str | None
) -> dict[str, str | None] | None:
    if model is None:
        return None
    return {"model": model, "state": state, "job_id": job_id, "error": error}


def item(
    conn: Connection, *, collection: str, external_id: str | None = None, item_id: int | None = None
) -> ItemInfo:
    """The collection's item with this external id or item id (exactly one of them).
    NotFound names what is missing: the collection, or the item in it."""
    if (external_id is None) == (item_id is None):
        raise BadRequest("name the item by its external id or by its item id (one of them)")
    found = conn.execute("SELECT id FROM collections WHERE name = %s", (collection,)).fetchone()
    if found is None:
        raise NotFound(f"unknown collection {collection!r}")
    column, value = ("external_id", external_id) if item_id is None else ("id", item_id)
    row = conn.execute(
        "SELECT id, external_id, kind, uri, text, metadata, created_at, updated_at, duration_s "
        f"FROM items WHERE collection_id = %s AND {column} = %s",
        (found[0], value),
    ).fetchone()
    if row is None:
        what = f"external id {external_id!r}" if item_id is None else f"item id {item_id}"
        raise NotFound(f"no item with {what} in collection {collection!r}")
    item_id, ext, kind, uri, text, metadata, created, updated, duration = row
    segments = None
    if kind == "video":
        segments = [
            SegmentInfo(*seg)
            for seg in conn.execute(
                "SELECT ordinal, start_s, end_s, keyframe_s FROM segments WHERE item_id = %s "
                "ORDER BY ordinal",
                (item_id,),
            )
        ]
    return ItemInfo(
        item_id, collection, ext, kind, uri, text, metadata, created, updated, duration, segments
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()
