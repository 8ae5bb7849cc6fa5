"""Stored vectors for searches by example: items by external id or item id, and a random
sample of a collection (the SVM's background negatives)."""

from __future__ import annotations

from collections.abc import Collection as Many
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, or_, select, text
from sqlalchemy.orm import Session

from mmq.store.tables import Collection, Item


@dataclass(frozen=True)
class StoredVector:
    item_id: int
    external_id: str | None
    vector: np.ndarray


def vectors_by_id(
    *,
    session: Session,
    collection: Collection,
    external_ids: Sequence[str] = (),
    item_ids: Sequence[int] = (),
) -> list[StoredVector]:
    """The collection's items among these ids (any order; ids it does not hold are left out)."""
    if not external_ids and not item_ids:
        return []
    # An external id is its item's key ("ext:<id>"): the unique index finds it.
    keys = [f"ext:{e}" for e in external_ids]
    rows = session.execute(
        select(Item.id, Item.external_id, Item.vector).where(
            Item.collection_id == collection.id,
            or_(Item.key.in_(keys), Item.id.in_(list(item_ids))),
        )
    )
    return [StoredVector(r.id, r.external_id, _array(r.vector)) for r in rows]


def sample_vectors(
    *,
    session: Session,
    collection: Collection,
    kinds: Sequence[str],
    n: int,
    exclude_item_ids: Many[int] = (),
    seed: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Up to `n` items of these kinds drawn at random from the collection: (vectors, ids).

    A random sample of the table's pages (TABLESAMPLE SYSTEM) costs what it reads, not
    what the collection holds (drawing with ORDER BY random() reads every row: 0.6 s at
    100k). It starts with the share of pages that holds about OVERSAMPLE * n rows were the
    collection the whole table, and grows while fewer than n of the collection's rows come
    back (a collection that is a small share of the table). When MIN_SHARE_PERCENT of the
    pages hold none of its rows, the collection is small: its rows are drawn by its index."""
    rng = np.random.default_rng(seed)
    want = n + len(exclude_item_ids)
    # The planner's row count of the whole table (-1 before its first ANALYZE).
    table_rows = session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass")
    )
    percent = min(100.0, 100.0 * OVERSAMPLE * want / max(float(table_rows or 0), 1.0))
    while True:
        rows = list(session.execute(_SAMPLED, {"p": percent, **_where(collection, kinds)}))
        if len(rows) >= want or percent >= 100.0:
            break
        if not rows and percent >= MIN_SHARE_PERCENT:
            rows = list(session.execute(_DRAWN, {"n": want, **_where(collection, kinds)}))
            break
        percent = min(100.0, percent * OVERSAMPLE * want / max(len(rows), want / 10))
    kept = [r for r in rows if r.id not in exclude_item_ids]
    if len(kept) > n:
        kept = [kept[i] for i in sorted(rng.choice(len(kept), n, replace=False))]
    if not kept:
        return np.zeros((0, collection.dim), np.float32), []
    return np.stack([_array(r.vector) for r in kept]), [r.id for r in kept]


OVERSAMPLE = 3
MIN_SHARE_PERCENT = 1.0
_COLUMNS = {"id": BigInteger(), "vector": Vector()}
_SAMPLED = text(
    "SELECT id, vector FROM items TABLESAMPLE SYSTEM (:p) "
    "WHERE collection_id = :c AND kind = ANY(:kinds)"
).columns(**_COLUMNS)
_DRAWN = text(
    "SELECT id, vector FROM items WHERE id IN (SELECT id FROM items "
    "WHERE collection_id = :c AND kind = ANY(:kinds) ORDER BY random() LIMIT :n)"
).columns(**_COLUMNS)


def _where(collection: Collection, kinds: Sequence[str]) -> dict[str, object]:
    return {"c": collection.id, "kinds": list(kinds)}


def _array(vector: object) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32)
