"""Repository functions over collections and items: upsert, indexes, the ANN query.

Video segments have theirs in store/segments.py; the ingest job records in mmq/jobs/.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import Table, bindparam, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mmq.errors import BadRequest, NotFound, WrongModel
from mmq.schemas import ALL_KINDS, ItemKind
from mmq.store.tables import Collection, Item


@dataclass(frozen=True)
class ItemRow:
    key: str
    external_id: str | None
    kind: str
    uri: str | None
    text: str | None
    metadata: dict[str, Any]
    content_hash: str
    vector: np.ndarray
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class HitRow:
    item_id: int
    external_id: str | None
    kind: str
    uri: str | None
    text: str | None
    metadata: dict[str, Any]
    distance: float


_UPDATED_COLUMNS = (
    "external_id",
    "kind",
    "uri",
    "text",
    "metadata",
    "content_hash",
    "model",
    "model_version",
    "dim",
    "vector",
    "image_vector",
    "text_vector",
    "duration_s",
)


def _upsert_statement() -> Any:
    # Core, not ORM: run with a list of parameter sets, a Core INSERT ... RETURNING pages
    # them into multi-row statements and hands every returned row back.
    table = cast(Table, Item.__table__)
    base = insert(table)
    updated = {name: base.excluded[name] for name in _UPDATED_COLUMNS}
    return base.on_conflict_do_update(
        constraint="items_collection_key", set_={**updated, "updated_at": func.now()}
    ).returning(
        table.c.key,
        table.c.id,
        # A row this statement inserted has no xmax; a row it updated carries the updating
        # transaction's id there (ON CONFLICT DO UPDATE locks the old version first). Per
        # row, so it holds for every page of a multi-row "insertmanyvalues" INSERT too.
        literal_column("xmax = 0").label("inserted"),
    )


_UPSERT = _upsert_statement()


class UpsertedIds(dict[str, int]):
    """key → item id of the rows an upsert wrote; `replaced` holds the keys whose item
    existed before the statement (updated in place rather than inserted)."""

    def __init__(self, ids: dict[str, int], replaced: frozenset[str]) -> None:
        super().__init__(ids)
        self.replaced = replaced


def index_name(collection_id: int) -> str:
    return f"items_hnsw_c{int(collection_id)}"


def segment_index_name(collection_id: int) -> str:
    return f"segments_hnsw_c{int(collection_id)}"


def get_collection(*, session: Session, name: str) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise NotFound(f"unknown collection {name!r}")
    return collection


def ensure_collection(
    *,
    session: Session,
    name: str,
    model: str,
    model_version: str,
    dim: int,
    fusion: str,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 64,
) -> Collection:
    """Return the collection, creating it and its HNSW index on first use.

    An existing collection must be bound to the same model and version: vectors from two
    models live in different spaces and comparing them would return garbage silently.
    """
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        # Serialise creation across workers (two CREATE INDEX for one new collection would
        # race); the lock lasts until the caller commits, so commit right after creating.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('mmq.collections'))"))
        collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        collection = Collection(
            name=name, model=model, model_version=model_version, dim=dim, fusion=fusion
        )
        session.add(collection)
        session.flush()
        create_indexes(
            session=session, collection=collection, m=hnsw_m, ef_construction=hnsw_ef_construction
        )
    else:
        require_model(collection, model=model, model_version=model_version)
    return collection


def require_model(collection: Collection, *, model: str, model_version: str) -> None:
    """Refuse to mix vector spaces: the collection's model and version must be this one."""
    _require_model(
        collection.name, (collection.model, collection.model_version), model, model_version
    )


def _require_model(name: str, bound: tuple[str, str], model: str, model_version: str) -> None:
    if bound != (model, model_version):
        raise WrongModel(
            f"collection {name!r} is bound to model {bound[0]} (version {bound[1]}); this "
            f"worker serves {model} (version {model_version})",
            model=bound[0],
        )


def check_dim(collection: Collection, vector: np.ndarray) -> None:
    if vector.ndim != 1 or vector.shape[0] != collection.dim:
        raise BadRequest(
            f"vector has dimension {vector.shape[-1]}, collection {collection.name!r} "
            f"expects {collection.dim}"
        )


def lock_for_upsert(
    *, session: Session, collection: Collection, model: str, model_version: str, keys: Sequence[str]
) -> list[str]:
    """Before an upsert, in one round trip: lock the collection's row in share mode until
    the commit (a reindex cannot switch its model meanwhile), check it is still bound to
    this model, and return the uris of its items with these keys (those the upsert
    replaces)."""
    row = session.execute(
        text(
            "SELECT c.model, c.model_version, ARRAY(SELECT i.uri FROM items i"
            " WHERE i.collection_id = c.id AND i.key = ANY(:keys) AND i.uri IS NOT NULL)"
            " FROM collections c WHERE c.id = :c FOR SHARE OF c"
        ),
        {"c": collection.id, "keys": list(keys)},
    ).one_or_none()
    if row is None:
        raise NotFound(f"collection {collection.name!r} was deleted meanwhile")
    _require_model(collection.name, (row[0], row[1]), model, model_version)
    return list(row[2])


def upsert_items(
    *, session: Session, collection: Collection, rows: Sequence[ItemRow]
) -> UpsertedIds:
    """Insert or update by `(collection, key)` in one statement; returns key → item id,
    and which keys had an item already (`UpsertedIds.replaced`)."""
    for row in rows:
        check_dim(collection, row.vector)
    # One statement cannot touch a row twice: the last occurrence of a key wins.
    unique = list({row.key: row for row in rows}.values())
    if not unique:
        return UpsertedIds({}, frozenset())
    values = [
        {
            "collection_id": collection.id,
            "key": row.key,
            "external_id": row.external_id,
            "kind": row.kind,
            "uri": row.uri,
            "text": row.text,
            "metadata": row.metadata,
            "content_hash": row.content_hash,
            "model": collection.model,
            "model_version": collection.model_version,
            "dim": collection.dim,
            "vector": row.vector,
            "image_vector": row.image_vector,
            "text_vector": row.text_vector,
            "duration_s": row.duration_s,
        }
        for row in unique
    ]
    # Many parameter sets for one statement: SQLAlchemy sends them as multi-row INSERTs
    # (its "insertmanyvalues", pages within PostgreSQL's bound-parameter cap) and compiles
    # the statement once per process, not once per call.
    returned = session.execute(_UPSERT, values).all()
    return UpsertedIds(
        {key: item_id for key, item_id, _ in returned},
        frozenset(key for key, _, inserted in returned if not inserted),
    )


def create_indexes(
    *, session: Session, collection: Collection, m: int, ef_construction: int
) -> None:
    """Partial expression indexes: one HNSW graph per collection over each shared table
    (items, and video segments). Bulk loads drop the items index first (`drop_item_index`)
    and build it once at the end, which is several times faster than growing it row by row."""
    # Identifiers and the width are integers we generated, never user input.
    for table, name in (
        ("items", index_name(collection.id)),
        ("segments", segment_index_name(collection.id)),
    ):
        session.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
                f"USING hnsw ((vector::vector({int(collection.dim)})) vector_cosine_ops) "
                f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
                f"WHERE collection_id = {int(collection.id)}"
            )
        )


def drop_item_index(*, session: Session, collection: Collection) -> None:
    session.execute(text(f"DROP INDEX IF EXISTS {index_name(collection.id)}"))


def search_sql(collection: Collection, *, with_filter: bool) -> str:
    """The ANN query. Its ORDER BY must match the collection's index expression exactly."""
    dim, cid = int(collection.dim), int(collection.id)
    where = f"collection_id = {cid} AND kind = ANY(:kinds)"
    if with_filter:
        where += " AND metadata @> CAST(:filter AS jsonb)"
    return (
        "SELECT id, external_id, kind, uri, text, metadata, "
        f"(vector::vector({dim})) <=> CAST(:q AS vector({dim})) AS distance "
        f"FROM items WHERE {where} ORDER BY distance LIMIT :k"
    )


def search_items(
    *,
    session: Session,
    collection: Collection,
    query: np.ndarray,
    kinds: Sequence[str],
    k: int,
    filter: dict[str, Any] | None = None,
    ef_search: int = 100,
) -> list[HitRow]:
    """k nearest items by cosine distance on the collection's HNSW index."""
    check_dim(collection, query)
    set_ann_params(session, ef_search=ef_search, k=k)
    stmt = text(search_sql(collection, with_filter=filter is not None)).bindparams(
        bindparam("q", type_=Vector())
    )
    params: dict[str, Any] = {"q": query, "kinds": list(kinds), "k": k}
    if filter is not None:
        params["filter"] = json.dumps(filter)
    rows = [
        HitRow(r.id, r.external_id, r.kind, r.uri, r.text, r.metadata, float(r.distance))
        for r in session.execute(stmt, params)
    ]
    # relaxed_order may return neighbours slightly out of order; the contract is sorted.
    return sorted(rows, key=lambda r: r.distance)


def kinds_held(*, session: Session, collection: Collection) -> list[ItemKind]:
    """The item kinds the collection has at least one item of, in ALL_KINDS order."""
    found = session.execute(
        text(
            "SELECT k FROM unnest(CAST(:kinds AS text[])) WITH ORDINALITY AS t(k, n) "
            "WHERE EXISTS (SELECT 1 FROM items WHERE collection_id = :c AND kind = t.k) "
            "ORDER BY n"
        ),
        {"kinds": list(ALL_KINDS), "c": collection.id},
    )
    return [k for (k,) in found]


def set_ann_params(session: Session, *, ef_search: int, k: int) -> None:
    """HNSW search settings for this transaction only (as SET LOCAL). Iterative scans keep
    filtered queries from returning fewer than k hits when the filter rejects most of the
    first candidates."""
    # pgvector accepts ef_search up to 1000; iterative scans go on past it when k is larger.
    # One statement for both: a round trip is a good part of a small ANN query's time.
    ef = min(1000, max(int(ef_search), int(k)))
    settings = f"set_config('hnsw.ef_search', '{ef}', true)"
    if _has_iterative_scan(session):
        settings += ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
    session.execute(text(f"SELECT {settings}"))


_iterative_scan: dict[str, bool] = {}


def _has_iterative_scan(session: Session) -> bool:
    """pgvector >= 0.8 has iterative index scans; 0.7 (also supported) has not."""
    url = str(session.get_bind().engine.url)
    if url not in _iterative_scan:
        version = session.scalar(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        )
        major, minor = (int(part) for part in str(version).split(".")[:2])
        _iterative_scan[url] = (major, minor) >= (0, 8)
    return _iterative_scan[url]
