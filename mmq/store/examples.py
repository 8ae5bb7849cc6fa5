"""Stored vectors for searches by example: items by external id or item id, and a random
sample of a collection (the SVM's background negatives).

Vectors are read in pgvector's binary form (`vector_send`): parsing the text form costs
about 0.18 ms a vector of 384 dimensions in Python, ten times the binary one's, and a
sample is hundreds of them.
"""

from __future__ import annotations

from collections.abc import Collection as Many
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from mmq.store.tables import Collection, Item

OVERSAMPLE = 3
MIN_SHARE_PERCENT = 1.0


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
        select(Item.id, Item.external_id, _BINARY).where(
            Item.collection_id == collection.id,
            or_(Item.key.in_(keys), Item.id.in_(list(item_ids))),
        )
    )
    return [StoredVector(r.id, r.external_id, _from_binary(r.binary)) for r in rows]


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
    what the collection holds (ORDER BY random() reads every row of it). It starts with
    the share of pages that holds about OVERSAMPLE * n rows were the collection the whole
    table, and grows while fewer than n of the collection's rows come back (a collection
    that is a small share of the table). When MIN_SHARE_PERCENT of the pages hold none of
    its rows, the collection is small: its rows are drawn through its index instead."""
    want = n + len(exclude_item_ids)
    where = {"c": collection.id, "kinds": list(kinds)}
    # The planner's row count of the whole table (-1 before its first ANALYZE).
    table_rows = session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass")
    )
    percent = min(100.0, 100.0 * OVERSAMPLE * want / max(float(table_rows or 0), 1.0))
    while True:
        ids = list(session.scalars(_SAMPLED, {"p": percent, **where}))
        if len(ids) >= want or percent >= 100.0:
            break
        if not ids and percent >= MIN_SHARE_PERCENT:
            ids = list(session.scalars(_DRAWN, {"n": want, **where}))
            break
        percent = min(100.0, percent * OVERSAMPLE * want / max(len(ids), want / 10))
    kept = [i for i in ids if i not in exclude_item_ids]
    if len(kept) > n:
        kept = np.random.default_rng(seed).choice(kept, n, replace=False).tolist()
    rows = session.execute(select(Item.id, _BINARY).where(Item.id.in_(kept))).all()
    if not rows:
        return np.zeros((0, collection.dim), np.float32), []
    return np.stack([_from_binary(r.binary) for r in rows]), [r.id for r in rows]


_BINARY = func.vector_send(Item.vector).label("binary")
_SAMPLED = text(
    "SELECT id FROM items TABLESAMPLE SYSTEM (:p) WHERE collection_id = :c AND kind = ANY(:kinds)"
)
_DRAWN = text(
    "SELECT id FROM items WHERE collection_id = :c AND kind = ANY(:kinds) "
    "ORDER BY random() LIMIT :n"
)


def _from_binary(data: bytes) -> np.ndarray:
    """pgvector's binary form: the dimension (int16), an unused int16, big-endian float4s."""
    dim = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)
