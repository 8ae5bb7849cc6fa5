"""Search by examples ("more like these"): rank a collection by a direction learned from
positive and negative examples (mmq/relevance.py: a linear SVM, or Rocchio's centroid).

The SVM learns against the given negatives and a random sample of the collection (cached
per process for BACKGROUND_TTL_S). Its ranking by margin is a ranking by cosine to its
normal vector, so one ANN query with that vector finds the top of the whole collection:
no candidate set is gathered first (docs/examples.md says why and measures it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection as Many
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import l2_normalize
from mmq.errors import BadRequest, NotFound
from mmq.media import clean_text, decode_image
from mmq.relevance import Method, direction
from mmq.schemas import Example, Hit, ItemKind, SearchRequest, SearchResult
from mmq.services.hits import item_hit, video_hits
from mmq.services.vectors import Space, collection_space, item_vector
from mmq.store import examples as stored
from mmq.store import repository
from mmq.store.tables import Collection

BACKGROUND_SIZE = 500  # items of the collection sampled as the SVM's negatives
# The SVM's direction lies off the data, where the index's graph search misses more: its
# query searches with this many times the ef_search given (at 100k vectors, recall@20 of
# the exact margin ranking 0.92 at ef_search 200, 0.97 at 400: docs/examples.md).
SVM_EF_FACTOR = 2
BACKGROUND_TTL_S = 300.0
_BACKGROUND_KEYS = 32  # collections (and target kinds) whose sample a process keeps


def stored_vectors(
    *,
    session: Session,
    collection: Collection,
    external_ids: Sequence[str] = (),
    item_ids: Sequence[int] = (),
) -> tuple[np.ndarray, list[int], list[str]]:
    """The stored vectors of these items, found by external id or item id: (vectors (n, d)
    in the order asked, external ids first, each item once; their item ids; the ids the
    collection does not hold, external ids as given and item ids as decimal strings)."""
    rows = stored.vectors_by_id(
        session=session, collection=collection, external_ids=external_ids, item_ids=item_ids
    )
    by_ext = {r.external_id: r for r in rows}
    by_id = {r.item_id: r for r in rows}
    found: dict[int, stored.StoredVector] = {}
    missing: list[str] = []
    for e in external_ids:
        if (row := by_ext.get(e)) is not None:
            found.setdefault(row.item_id, row)
        else:
            missing.append(e)
    for i in item_ids:
        if (row := by_id.get(i)) is not None:
            found.setdefault(row.item_id, row)
        else:
            missing.append(str(i))
    if not found:
        return np.zeros((0, collection.dim), np.float32), [], missing
    return np.stack([r.vector for r in found.values()]), list(found), missing


def rank_examples(
    *,
    session: Session,
    collection: Collection,
    positives: np.ndarray,
    negatives: np.ndarray | None,
    method: Method,
    k: int,
    targets: Sequence[ItemKind],
    filter: dict[str, Any] | None,
    exclude_item_ids: Many[int] = (),
    ef_search: int,
    settings: Settings,
    segments_listed: str = "best",
    min_score: float | None = None,
) -> list[Hit]:
    """The k best items of `targets` (under `filter`, leaving out `exclude_item_ids`) for
    these unit example vectors, best first. Scores: see Hit (svm: signed distance to the
    SVM's boundary; centroid: cosine to the centroid). `segments_listed` and `min_score`
    are SearchRequest's `segments` and `min_score`; `settings` the worker's."""
    exclude = frozenset(exclude_item_ids)
    background = None
    if method == "svm":
        background = _background(session, collection, targets, exclude, positives)
    ranker = direction(method, positives, negatives, background)

    def score(distance: float, kind: str) -> float:
        return (1.0 - distance) + ranker.offset

    if method == "svm":
        ef_search *= SVM_EF_FACTOR
    want = k + len(exclude)  # the excluded may take places among the nearest
    hits: list[Hit] = []
    item_kinds = [kind for kind in targets if kind != "video"]
    if item_kinds:
        rows = repository.search_items(
            session=session,
            collection=collection,
            query=ranker.vector,
            kinds=item_kinds,
            k=want,
            filter=filter,
            ef_search=ef_search,
        )
        hits += [item_hit(r, score) for r in rows]
    if "video" in targets:
        hits += video_hits(
            session,
            collection,
            ranker.vector,
            score,
            k=want,
            filter=filter,
            ef_search=ef_search,
            listed=segments_listed,
            min_score=min_score,
        )
    hits = [h for h in hits if h.item_id not in exclude]
    if min_score is not None:
        hits = [h for h in hits if h.score >= min_score]
    return sorted(hits, key=lambda h: -h.score)[:k]


def search_by_examples(
    *, encoder: Encoder, session: Session, request: SearchRequest, settings: Settings
) -> SearchResult:
    """A SearchRequest with positives: its examples resolved, then rank_examples. Examples
    asked by id that the collection lacks are reported, not an error, unless no positive
    is left."""
    t0 = time.perf_counter()
    collection = repository.get_collection(session=session, name=request.collection)
    positives, positive_ids, missing = _resolve(
        encoder, session, collection, request.positives, settings
    )
    if not len(positives):
        raise NotFound(
            f"collection {collection.name!r} holds none of the positive examples: "
            + ", ".join(missing)
        )
    negatives, negative_ids, missing_negatives = _resolve(
        encoder, session, collection, request.negatives, settings
    )
    t1 = time.perf_counter()
    hits = rank_examples(
        session=session,
        collection=collection,
        positives=positives,
        negatives=negatives if len(negatives) else None,
        method=request.method,
        k=request.k,
        targets=request.targets,
        filter=request.filter,
        # Examples stored in the collection are not results: they are what the user has seen.
        exclude_item_ids={*positive_ids, *negative_ids},
        ef_search=request.ef_search or settings.ef_search,
        settings=settings,
        segments_listed=request.segments,
        min_score=request.min_score,
    )
    kinds_held = None if hits else repository.kinds_held(session=session, collection=collection)
    session.commit()
    t2 = time.perf_counter()
    missing += missing_negatives
    return SearchResult(
        collection=collection.name,
        hits=hits,
        timings_ms={"encode": (t1 - t0) * 1e3, "rank": (t2 - t1) * 1e3},
        model=collection.model,
        model_version=collection.model_version,
        kinds_held=kinds_held,
        missing_examples=missing or None,
    )


def _resolve(
    encoder: Encoder,
    session: Session,
    collection: Collection,
    examples: Sequence[Example],
    settings: Settings,
) -> tuple[np.ndarray, list[int], list[str]]:
    """(unit vectors of the examples, the item ids of the stored ones, the ids not found)."""
    vectors, ids, missing = stored_vectors(
        session=session,
        collection=collection,
        external_ids=[e.external_id for e in examples if e.external_id is not None],
        item_ids=[e.item_id for e in examples if e.item_id is not None],
    )
    given = [e for e in examples if not e.stored]
    if given:
        vectors = np.concatenate([vectors, _encode(encoder, collection, given, settings)])
    return l2_normalize(vectors), ids, missing


def _encode(
    encoder: Encoder,
    collection: Collection,
    examples: Sequence[Example],
    settings: Settings,
) -> np.ndarray:
    """Given examples as the collection stores items: raw vectors checked, images and texts
    encoded by the collection's model."""
    out = []
    target: Space | None = None
    for example in examples:
        if example.vector is not None:
            v = np.asarray(example.vector, dtype=np.float32)
            repository.check_dim(collection, v)
            if not np.any(v):
                raise BadRequest("an example vector is all zeros: it has no direction")
            out.append(v)
            continue
        # Checks the collection's model (and autoencoder) is this encoder's.
        target = target or collection_space(encoder, collection)
        parts: dict[str, np.ndarray] = {}
        if example.text is not None:
            text = clean_text(example.text, max_chars=settings.max_text_chars)
            parts["text"] = encoder.encode_texts([text])[0]
        if example.image_bytes is not None:
            image = decode_image(
                example.image_bytes,
                max_bytes=settings.max_image_bytes,
                max_pixels=settings.max_image_pixels,
                min_side=encoder.decode_side,
            )
            parts["image"] = encoder.encode_images([image])[0]
        out.append(
            item_vector(parts, collection_fusion=target.fusion, autoencoder=target.autoencoder)
        )
    return np.stack(out).astype(np.float32)


_samples: dict[tuple[object, ...], tuple[float, np.ndarray, list[int]]] = {}
_lock = threading.Lock()


def _background(
    session: Session,
    collection: Collection,
    kinds: Sequence[str],
    exclude: frozenset[int],
    positives: np.ndarray,
) -> np.ndarray:
    """A random sample of the collection's items of these kinds, less the examples: the
    excluded ids and anything that is a positive itself (a given vector, say)."""
    url = session.get_bind().engine.url.render_as_string(hide_password=True)
    # The model version: a reindex replaces every vector of the collection.
    key = (
        url,
        collection.id,
        collection.created_at,
        collection.model_version,
        tuple(sorted(set(kinds))),
    )
    now = time.monotonic()
    with _lock:
        cached = _samples.get(key)
    if cached is None or now - cached[0] > BACKGROUND_TTL_S:
        vectors, ids = stored.sample_vectors(
            session=session, collection=collection, kinds=kinds, n=BACKGROUND_SIZE
        )
        cached = (now, l2_normalize(vectors), ids)
        if ids:  # an empty collection may not stay empty: ask again next time
            with _lock:
                _samples.pop(key, None)
                _samples[key] = cached
                while len(_samples) > _BACKGROUND_KEYS:
                    _samples.pop(next(iter(_samples)))
    _, vectors, ids = cached
    keep = np.array([i not in exclude for i in ids], dtype=bool)
    for positive in positives if len(vectors) else ():
        # One product per positive: a matrix product here goes to a multi-threaded BLAS
        # whose threads, on a busy worker, wait for cores (tens of ms at 3 positives).
        keep &= vectors @ positive < 0.9999
    return vectors[keep]
