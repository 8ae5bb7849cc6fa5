"""Search: encode the query once → fuse → ANN on the collection's HNSW indexes.

Images, texts and pairs are found on the items index; videos through their segments' index,
ranked by their best segment. A hit's score is its cosine (times the query's scale) mapped
by the model's calibration of its (query kind, item kind) pair onto the scale of the
query's image hits (mmq/encoders/calibration.py), so that hits of every kind merge by one
comparable score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import l2_normalize
from mmq.encoders.calibration import IDENTITY, Calibration, query_kind
from mmq.errors import BadRequest
from mmq.media import clean_text, decode_image
from mmq.schemas import Hit, SearchRequest, SearchResult
from mmq.services.examples import search_by_examples
from mmq.services.hits import item_hit, video_hits
from mmq.services.vectors import collection_space, query_vector
from mmq.store import repository
from mmq.store.tables import Collection


@dataclass(frozen=True)
class Scorer:
    """A hit's score from its cosine distance: the cosine times the query's scale (a
    weighted concat query), then the calibration's map for (query kind, item kind)."""

    scale: float
    calibration: Calibration
    query_kind: str | None  # None: a raw vector, not calibrated
    fusion: str

    def __call__(self, distance: float, item_kind: str) -> float:
        cosine = (1.0 - distance) * self.scale
        return self.calibration.apply(
            cosine, query_kind=self.query_kind, item_kind=item_kind, fusion=self.fusion
        )


def search(
    *, encoder: Encoder, session: Session, request: SearchRequest, settings: Settings
) -> SearchResult:
    """Rank the collection's items against a text, image, composed or vector query, or
    by examples (more like the request's positives: mmq/services/examples.py)."""
    if request.positives:
        return search_by_examples(
            encoder=encoder, session=session, request=request, settings=settings
        )
    t0 = time.perf_counter()
    collection = repository.get_collection(session=session, name=request.collection)
    encoded_text = None
    calibration = IDENTITY  # a raw vector: which scale its cosines are on is not known
    if request.vector is not None:
        query = np.asarray(request.vector, dtype=np.float32)
        if not np.isfinite(query).all() or not np.any(query):
            raise BadRequest("query vector must be finite and non-zero")
        query, scale = l2_normalize(query), 1.0
    else:
        # Checks the collection's model (and autoencoder) is this encoder's.
        target = collection_space(encoder, collection)
        parts, encoded_text = _encode_query(encoder, request, settings)
        query, scale = query_vector(
            parts,
            collection_fusion=target.fusion,
            method=request.fusion,
            weights=request.weights,
            autoencoder=target.autoencoder,
        )
        calibration = target.calibration
    score = Scorer(
        scale,
        calibration,
        query_kind(text=request.text is not None, image=request.image_bytes is not None),
        collection.fusion,
    )
    t1 = time.perf_counter()
    ef_search = request.ef_search or settings.ef_search
    hits: list[Hit] = []
    item_kinds = [kind for kind in request.targets if kind != "video"]
    if item_kinds:
        hits += item_hits(session, collection, query, score, request, item_kinds, ef_search)
    if "video" in request.targets:
        hits += video_hits(
            session,
            collection,
            query,
            score,
            k=request.k,
            filter=request.filter,
            ef_search=ef_search,
            listed=request.segments,
            min_score=request.min_score,
        )
    # Nothing found: say what the collection holds, so that "no hits" because `targets`
    # leaves out every kind it has (or it is empty) is not read as "no match".
    kinds_held = None if hits else repository.kinds_held(session=session, collection=collection)
    session.commit()
    t2 = time.perf_counter()
    if request.min_score is not None:
        hits = [h for h in hits if h.score >= request.min_score]
    hits = sorted(hits, key=lambda h: -h.score)[: request.k]
    return SearchResult(
        kinds_held=kinds_held,
        collection=collection.name,
        hits=hits,
        timings_ms={"encode": (t1 - t0) * 1e3, "ann": (t2 - t1) * 1e3},
        model=collection.model,
        model_version=collection.model_version,
        encoded_text=encoded_text,
    )


def item_hits(
    session: Session,
    collection: Collection,
    query: np.ndarray,
    score: Scorer,
    request: SearchRequest,
    kinds: Sequence[str],
    ef_search: int,
) -> list[Hit]:
    """The k best images, texts and pairs by calibrated score.

    Calibration is an increasing map per kind, so a kind's k nearest are its k best, and
    the k best of all are among the kinds' k nearest merged. One ANN query over all the
    kinds comes first; a kind gets a query of its own only if its items not found yet
    (none nearer than the farthest found) could still outscore the k-th hit found once
    calibrated. With the identity (raw vectors, models without a calibration) that is
    never; a text query usually needs one more, for images (docs/models.md measures it)."""

    def nearest(of: Sequence[str]) -> list[repository.HitRow]:
        return repository.search_items(
            session=session,
            collection=collection,
            query=query,
            kinds=of,
            k=request.k,
            filter=request.filter,
            ef_search=ef_search,
        )

    found = {r.item_id: r for r in nearest(kinds)}
    # Fewer than k found: the collection has no more of these kinds (under the filter).
    if len(found) >= request.k:
        farthest = max(r.distance for r in found.values())
        kth = min(score(r.distance, r.kind) for r in found.values())
        for kind in kinds:
            if score(farthest, kind) > kth:
                found.update((r.item_id, r) for r in nearest([kind]))
    return [item_hit(r, score) for r in found.values()]


def _encode_query(
    encoder: Encoder, request: SearchRequest, settings: Settings
) -> tuple[dict[str, np.ndarray], str | None]:
    """The query's vector per modality, and the text the model read where it rewrote the
    query's text (None where it read it as given)."""
    parts: dict[str, np.ndarray] = {}
    encoded_text = None
    if request.text is not None:
        text = clean_text(request.text, max_chars=settings.max_text_chars)
        parts["text"] = encoder.encode_texts([text])[0]
        if (as_read := encoder.text_as_encoded(text)) != text:
            encoded_text = as_read
    if request.image_bytes is not None:
        image = decode_image(
            request.image_bytes,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=encoder.decode_side,
        )
        parts["image"] = encoder.encode_images([image])[0]
    return parts, encoded_text
