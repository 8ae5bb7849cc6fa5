"""What the HTTP API reads of the collections: summaries per collection and where an
item's media lies. Plain reads, no vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class CollectionSummary:
    name: str
    model: str
    model_version: str
    fusion: str
    dim: int
    counts: dict[str, int]  # items per kind (image, text, pair, video); absent kinds left out


@dataclass(frozen=True)
class ItemMedia:
    item_id: int
    collection: str
    kind: str
    uri: str | None
    external_id: str | None


def collection_summaries(*, session: Session, names: Sequence[str]) -> list[CollectionSummary]:
    """The collections among `names` that exist, by name, with their item counts."""
    if not names:
        return []
    rows = session.execute(
        text(
            "SELECT c.name, c.model, c.model_version, c.fusion, c.dim, i.kind, count(i.id) "
            "FROM collections c LEFT JOIN items i ON i.collection_id = c.id "
            "WHERE c.name = ANY(:names) GROUP BY c.id, i.kind ORDER BY c.name"
        ),
        {"names": list(names)},
    ).all()
    found: dict[str, CollectionSummary] = {}
    for name, model, version, fusion, dim, kind, n in rows:
        summary = found.setdefault(name, CollectionSummary(name, model, version, fusion, dim, {}))
        if kind is not None:
            summary.counts[kind] = n
    return list(found.values())


def item_media(*, session: Session, item_id: int) -> ItemMedia | None:
    row = session.execute(
        text(
            "SELECT i.id, c.name, i.kind, i.uri, i.external_id FROM items i "
            "JOIN collections c ON c.id = i.collection_id WHERE i.id = :id"
        ),
        {"id": item_id},
    ).first()
    return None if row is None else ItemMedia(*row)
