"""Hits built from the store's rows: what a search and a search by examples both return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from mmq.schemas import Hit, SegmentHit
from mmq.store import repository, segments
from mmq.store.tables import Collection

# A hit's score from its cosine distance and its item's kind.
Score = Callable[[float, str], float]


def item_hit(row: repository.HitRow, score: Score) -> Hit:
    """An image, text or pair hit."""
    return Hit(
        item_id=row.item_id,
        external_id=row.external_id,
        score=score(row.distance, row.kind),
        kind=row.kind,  # type: ignore[arg-type]
        uri=row.uri,
        text=row.text,
        metadata=row.metadata,
    )


def video_hits(
    session: Session,
    collection: Collection,
    query: np.ndarray,
    score: Score,
    *,
    k: int,
    filter: dict[str, Any] | None,
    ef_search: int,
    listed: str = "best",
    min_score: float | None = None,
) -> list[Hit]:
    """The k videos whose best segment is nearest, each with that segment's time range
    (and, with listed="all", every segment scoring at least min_score). Segment vectors
    are image vectors: a video's scores take the calibration of images."""
    best = segments.best_segments(
        session=session,
        collection=collection,
        query=query,
        k=k,
        filter=filter,
        ef_search=ef_search,
    )
    ids = [b.item_id for b in best]
    videos = segments.video_rows(session=session, item_ids=ids)
    every: dict[int, list[SegmentHit]] = {}
    if listed == "all" and ids:
        floor = -np.inf if min_score is None else min_score
        scored = segments.all_segments(
            session=session, collection=collection, query=query, item_ids=ids
        )
        for item_id, found in scored.items():
            hits = [
                SegmentHit(
                    start_s=s.start_s,
                    end_s=s.end_s,
                    keyframe_s=s.keyframe_s,
                    score=score(s.distance, "video"),
                )
                for s in found
            ]
            every[item_id] = [h for h in hits if h.score >= floor]
    return [
        Hit(
            item_id=b.item_id,
            external_id=videos[b.item_id].external_id,
            score=score(b.distance, "video"),
            kind="video",
            uri=videos[b.item_id].uri,
            text=None,
            metadata=videos[b.item_id].metadata,
            start_s=b.start_s,
            end_s=b.end_s,
            keyframe_s=b.keyframe_s,
            duration_s=videos[b.item_id].duration_s,
            segments=every.get(b.item_id),
        )
        for b in best
        if b.item_id in videos
    ]
