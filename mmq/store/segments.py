"""Video segments: written with their video item, searched on the collection's own
segment HNSW index, and ranked per video."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, delete, insert, text
from sqlalchemy.orm import Session

from mmq.store.repository import check_dim, set_ann_params
from mmq.store.tables import Collection, Segment

# Nearest segments fetched per wanted video on the first try; more if videos repeat.
_SEGMENTS_PER_VIDEO = 4
_MAX_CANDIDATES = 20_000  # pgvector's own cap on an iterative scan (hnsw.max_scan_tuples)


@dataclass(frozen=True)
class SegmentRow:
    start_s: float
    end_s: float
    keyframe_s: float
    vector: np.ndarray


@dataclass(frozen=True)
class SegmentHitRow:
    item_id: int
    ordinal: int
    start_s: float
    end_s: float
    keyframe_s: float
    distance: float


@dataclass(frozen=True)
class VideoRow:
    item_id: int
    external_id: str | None
    uri: str | None
    metadata: dict[str, Any]
    duration_s: float | None


def replace_segments(
    *, session: Session, collection: Collection, item_id: int, segments: Sequence[SegmentRow]
) -> None:
    """Make `segments` the video's segments (a re-ingested video replaces its old ones)."""
    for seg in segments:
        check_dim(collection, seg.vector)
    session.execute(delete(Segment).where(Segment.item_id == item_id))
    if segments:
        session.execute(
            insert(Segment),
            [
                {
                    "item_id": item_id,
                    "collection_id": collection.id,
                    "ordinal": i,
                    "start_s": seg.start_s,
                    "end_s": seg.end_s,
                    "keyframe_s": seg.keyframe_s,
                    "vector": seg.vector,
                }
                for i, seg in enumerate(segments)
            ],
        )


def drop_segments(*, session: Session, item_ids: Sequence[int]) -> None:
    """Forget the segments of items that are no longer videos (re-ingested as another kind)."""
    if item_ids:
        session.execute(delete(Segment).where(Segment.item_id.in_(list(item_ids))))


def segment_search_sql(collection: Collection, *, with_filter: bool) -> str:
    """Nearest segments. The ORDER BY matches the collection's segment index expression."""
    dim, cid = int(collection.dim), int(collection.id)
    where = f"collection_id = {cid}"
    if with_filter:
        where += (
            f" AND item_id IN (SELECT id FROM items WHERE collection_id = {cid}"
            " AND metadata @> CAST(:filter AS jsonb))"
        )
    return f"{_select_scored(dim)} WHERE {where} ORDER BY distance LIMIT :n"


def best_segments(
    *,
    session: Session,
    collection: Collection,
    query: np.ndarray,
    k: int,
    filter: dict[str, Any] | None = None,
    ef_search: int = 100,
) -> list[SegmentHitRow]:
    """The k videos whose best segment is nearest the query, each with that segment."""
    check_dim(collection, query)
    stmt = text(segment_search_sql(collection, with_filter=filter is not None)).bindparams(
        bindparam("q", type_=Vector())
    )
    params: dict[str, Any] = {"q": query}
    if filter is not None:
        params["filter"] = json.dumps(filter)
    n = max(k * _SEGMENTS_PER_VIDEO, 32)
    while True:
        set_ann_params(session, ef_search=ef_search, k=n)
        rows = [_hit(r) for r in session.execute(stmt, {**params, "n": n})]
        best: dict[int, SegmentHitRow] = {}
        for row in sorted(rows, key=lambda r: r.distance):
            best.setdefault(row.item_id, row)
        # Stop with k videos, or when the collection has no more segments to give.
        if len(best) >= k or len(rows) < n or n >= _MAX_CANDIDATES:
            return list(best.values())[:k]
        n = min(n * 4, _MAX_CANDIDATES)


def all_segments(
    *, session: Session, collection: Collection, query: np.ndarray, item_ids: Sequence[int]
) -> dict[int, list[SegmentHitRow]]:
    """Every segment of the given videos, scored exactly against the query, nearest first."""
    check_dim(collection, query)
    dim = int(collection.dim)
    stmt = text(
        f"{_select_scored(dim)} WHERE collection_id = {int(collection.id)} "
        "AND item_id = ANY(:ids) ORDER BY distance"
    ).bindparams(bindparam("q", type_=Vector()))
    out: dict[int, list[SegmentHitRow]] = {int(i): [] for i in item_ids}
    for r in session.execute(stmt, {"q": query, "ids": list(item_ids)}):
        out[r.item_id].append(_hit(r))
    return out


def video_rows(*, session: Session, item_ids: Sequence[int]) -> dict[int, VideoRow]:
    rows = session.execute(
        text("SELECT id, external_id, uri, metadata, duration_s FROM items WHERE id = ANY(:ids)"),
        {"ids": list(item_ids)},
    )
    return {r.id: VideoRow(r.id, r.external_id, r.uri, r.metadata, r.duration_s) for r in rows}


def _select_scored(dim: int) -> str:
    """Segments with their cosine distance to :q, computed as the segment index defines it."""
    return (
        "SELECT item_id, ordinal, start_s, end_s, keyframe_s, "
        f"(vector::vector({int(dim)})) <=> CAST(:q AS vector({int(dim)})) AS distance "
        "FROM segments"
    )


def _hit(r: Any) -> SegmentHitRow:
    return SegmentHitRow(r.item_id, r.ordinal, r.start_s, r.end_s, r.keyframe_s, float(r.distance))
