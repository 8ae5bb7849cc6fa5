"""Deleting items and collections. A video's segments go with its item, and a
collection's items and segments with it (foreign keys ON DELETE CASCADE)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from mmq.store.repository import index_name, segment_index_name
from mmq.store.tables import Collection


@dataclass(frozen=True)
class Deleted:
    count: int  # items deleted
    found: list[Any] = field(default_factory=list)  # the asked ids that named an item
    # The distinct uris of the deleted items that begin with the prefix asked for.
    uris: list[str] = field(default_factory=list)


def delete_items(
    *,
    session: Session,
    collection: Collection,
    external_ids: Sequence[str] = (),
    item_ids: Sequence[int] = (),
    filter: dict[str, Any] | None = None,
    uri_prefix: str,
) -> Deleted:
    """Delete the collection's items with these external ids, or these item ids, or whose
    metadata contains `filter`, or (none of them given) every item, in one statement. The
    caller commits."""
    params: dict[str, Any] = {"c": collection.id, "prefix": uri_prefix}
    if external_ids:
        where, found = "external_id = ANY(:ids)", "array_agg(external_id)"
        params["ids"] = list(external_ids)
    elif item_ids:
        where, found = "id = ANY(:ids)", "array_agg(id)"
        params["ids"] = list(item_ids)
    elif filter is not None:
        where, found = "metadata @> CAST(:filter AS jsonb)", "NULL"
        params["filter"] = json.dumps(filter)
    else:
        where, found = "TRUE", "NULL"
    count, ids, uris = session.execute(
        text(
            "WITH gone AS (DELETE FROM items WHERE collection_id = :c AND "
            f"{where} RETURNING id, external_id, uri) "
            f"SELECT count(*), {found}, "
            "array_agg(DISTINCT uri) FILTER (WHERE starts_with(uri, :prefix)) FROM gone"
        ),
        params,
    ).one()
    return Deleted(count, [i for i in ids or () if i is not None], list(uris or ()))


def delete_collection(*, session: Session, collection: Collection, uri_prefix: str) -> Deleted:
    """Delete every item of the collection, its users' events (they name it, and a new
    collection of the same name must not inherit them), then the collection itself (the
    caller commits, then drops its indexes: `drop_indexes`)."""
    deleted = delete_items(session=session, collection=collection, uri_prefix=uri_prefix)
    session.execute(text("DELETE FROM events WHERE collection = :n"), {"n": collection.name})
    session.execute(text("DELETE FROM collections WHERE id = :c"), {"c": collection.id})
    return deleted


def drop_indexes(*, engine: Engine, collection_id: int) -> None:
    """Drop a deleted collection's HNSW indexes. CONCURRENTLY, outside any transaction: a
    plain DROP INDEX would lock the shared items and segments tables against every search
    of every collection until it ends."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in (index_name(collection_id), segment_index_name(collection_id)):
            conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))


def referenced_uris(*, session: Session, uris: Sequence[str]) -> set[str]:
    """The uris among these that an item of any collection still has."""
    if not uris:
        return set()
    rows = session.execute(
        text("SELECT DISTINCT uri FROM items WHERE uri = ANY(:uris)"), {"uris": list(uris)}
    )
    return {uri for (uri,) in rows}
