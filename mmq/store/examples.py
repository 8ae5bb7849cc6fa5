"""Stored vectors for searches by example: items by external id or item id, and a random
sample of a collection (the SVM's background negatives)."""

from __future__ import annotations

from collections.abc import Collection as Many
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, or_, select
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
) -> tuple[np.ndarray, list[int]]:
    """Up to `n` items of these kinds drawn at random from the collection: (vectors, ids)."""
    ids = (
        select(Item.id)
        .where(Item.collection_id == collection.id, Item.kind.in_(list(kinds)))
        .order_by(func.random())
        .limit(n + len(exclude_item_ids))
        .scalar_subquery()
    )
    # The draw reads ids only; vectors are read for the n drawn rows alone.
    rows = [
        r
        for r in session.execute(select(Item.id, Item.vector).where(Item.id.in_(ids)))
        if r.id not in exclude_item_ids
    ][:n]
    if not rows:
        return np.zeros((0, collection.dim), np.float32), []
    return np.stack([_array(r.vector) for r in rows]), [r.id for r in rows]


def _array(vector: object) -> np.ndarray:
    return np.asarray(vector, dtype=np.float32)
