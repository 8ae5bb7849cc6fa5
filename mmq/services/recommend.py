"""Recommend: a user's recorded events → a profile → a search by example.

The profile is the user's items, each weighing the sum of its events' weights (view 1 …
purchase 5, mmq/jobs/events.py), each halved for every `MMQ_RECOMMEND_HALF_LIFE_DAYS` of
its age. Items with a positive weight are the positive examples, those with a negative one
(dislikes) the negatives, and `rank_examples` ranks the collection (mmq/services/examples.py):
a linear SVM over the positives when there are at least SVM_MIN_POSITIVES of them, else
their weighted centroid. A user without a positive item stored in the collection gets its
most interacted-with items instead (`method="popular"`, `cold_start`).

Each hit says `because` of which history items: those whose weight times cosine to the hit
is largest, the profile's own account of why the hit is near it.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from psycopg import Connection
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders.base import l2_normalize
from mmq.jobs import events
from mmq.jobs.claims import session_conn
from mmq.schemas import Hit, RecommendHit, RecommendRequest, RecommendResult
from mmq.services.examples import rank_examples, stored_vectors
from mmq.store import repository
from mmq.store.tables import Collection

# Below this many positive items, the centroid: on `lite` vectors a linear SVM ranks no
# better than the centroid at 3 positives and starts to pay at 10 (issue #18's figures,
# measured for "more like these", not on the recommendation benchmark).
SVM_MIN_POSITIVES = 10
# The heaviest items of a profile that are examples; the rest of a long history still
# counts as seen. A history longer than MAX_HISTORY items is cut to its heaviest.
MAX_POSITIVES = 100
MAX_HISTORY = 2000
BECAUSE = 3  # history items named per hit


def recommend(
    *, session: Session, request: RecommendRequest, settings: Settings
) -> RecommendResult:
    """Rank the collection's items for the user from the events recorded for them."""
    t0 = time.perf_counter()
    collection = repository.get_collection(session=session, name=request.collection)
    half_life_s = settings.recommend_half_life_days * 86400.0
    conn = session_conn(session)
    interests = events.history(
        conn,
        collection=collection.name,
        user=request.user,
        half_life_s=half_life_s,
        limit=MAX_HISTORY,
    )
    weight = {i.external_id: i.weight for i in interests}
    vectors, item_ids, missing = stored_vectors(
        session=session, collection=collection, external_ids=list(weight)
    )
    not_stored = set(missing)
    found = [e for e in weight if e not in not_stored]  # stored_vectors keeps their order
    w = np.array([weight[e] for e in found], dtype=np.float32)
    seen = item_ids if request.exclude_seen else []
    liked = np.flatnonzero(w > 0)[:MAX_POSITIVES]  # `interests` is heaviest first
    t1 = time.perf_counter()
    method: Literal["svm", "centroid", "popular"] = "popular"
    if not len(liked):
        hits = _popular(conn, collection, request, half_life_s, seen)
    else:
        method = (
            request.method
            if request.method != "auto"
            else ("svm" if len(liked) >= SVM_MIN_POSITIVES else "centroid")
        )
        ranked = _ranked(session, collection, request, settings, method, vectors, w, liked, seen)
        liked_ids = [found[i] for i in liked]
        hits = _because(session, collection, ranked, vectors[liked], w[liked], liked_ids)
    session.commit()
    t2 = time.perf_counter()
    return RecommendResult(
        collection=collection.name,
        user=request.user,
        hits=hits,
        method=method,
        cold_start=not len(liked),
        history=len(liked),
        history_missing=len(missing),
        timings_ms={"history": (t1 - t0) * 1e3, "rank": (t2 - t1) * 1e3},
        model=collection.model,
        model_version=collection.model_version,
    )


def _ranked(
    session: Session,
    collection: Collection,
    request: RecommendRequest,
    settings: Settings,
    method: Literal["svm", "centroid"],
    vectors: np.ndarray,
    weights: np.ndarray,
    liked: np.ndarray,
    seen: list[int],
) -> list[Hit]:
    """rank_examples over the liked items (the disliked as negatives). The centroid takes
    the weights through its mean: its one positive is the weighted centroid; the SVM takes
    the items as equals (their weights chose them)."""
    positives = vectors[liked]
    if method == "centroid":
        positives = l2_normalize(weights[liked] @ positives)[None, :]
    disliked = np.flatnonzero(weights < 0)
    return rank_examples(
        session=session,
        collection=collection,
        positives=positives,
        negatives=vectors[disliked] if len(disliked) else None,
        method=method,
        k=request.k,
        targets=request.targets,
        filter=request.filter,
        exclude_item_ids=seen,
        ef_search=request.ef_search or settings.ef_search,
        settings=settings,
    )


def _because(
    session: Session,
    collection: Collection,
    ranked: list[Hit],
    liked: np.ndarray,
    weights: np.ndarray,
    liked_ids: list[str],
) -> list[RecommendHit]:
    """Each hit with the BECAUSE history items of most weight × cosine to it."""
    hit_vectors, hit_ids, _ = stored_vectors(
        session=session, collection=collection, item_ids=[h.item_id for h in ranked]
    )
    row = {item_id: i for i, item_id in enumerate(hit_ids)}
    out = []
    for hit in ranked:
        because: list[str] = []
        if hit.item_id in row:
            pull = weights * (liked @ hit_vectors[row[hit.item_id]])
            order = np.argsort(-pull, kind="stable")[:BECAUSE]
            because = [liked_ids[i] for i in order if pull[i] > 0]
        out.append(RecommendHit(**hit.model_dump(), because=because))
    return out


def _popular(
    conn: Connection,
    collection: Collection,
    request: RecommendRequest,
    half_life_s: float,
    seen: list[int],
) -> list[RecommendHit]:
    rows = events.popular(
        conn,
        collection=collection.name,
        collection_id=collection.id,
        half_life_s=half_life_s,
        kinds=request.targets,
        filter=request.filter,
        exclude_item_ids=seen,
        k=request.k,
    )
    top = rows[0].weight if rows else 1.0
    return [
        RecommendHit(
            item_id=r.item_id,
            external_id=r.external_id,
            score=r.weight / top,
            kind=r.kind,  # type: ignore[arg-type]
            uri=r.uri,
            text=r.text,
            metadata=r.metadata,
        )
        for r in rows
    ]
