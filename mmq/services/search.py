"""Search: encode the query once → fuse → ANN on the collection's HNSW index."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import l2_normalize
from mmq.media import clean_text, decode_image
from mmq.schemas import Hit, SearchRequest, SearchResult
from mmq.services.vectors import query_vector
from mmq.store import repository


def search(
    *, encoder: Encoder, session: Session, request: SearchRequest, settings: Settings
) -> SearchResult:
    """Rank the collection's items against a text, image, composed or vector query."""
    t0 = time.perf_counter()
    collection = repository.get_collection(session=session, name=request.collection)
    if request.vector is not None:
        query = np.asarray(request.vector, dtype=np.float32)
        if not np.isfinite(query).all() or not np.any(query):
            raise ValueError("query vector must be finite and non-zero")
        query, scale = l2_normalize(query), 1.0
    else:
        repository.require_model(collection, model=encoder.name, model_version=encoder.version)
        query, scale = query_vector(
            _encode_query(encoder, request, settings),
            collection_fusion=collection.fusion,  # type: ignore[arg-type]
            method=request.fusion,
            weights=request.weights,
        )
    t1 = time.perf_counter()
    rows = repository.search_items(
        session=session,
        collection=collection,
        query=query,
        kinds=request.targets,
        k=request.k,
        filter=request.filter,
        ef_search=request.ef_search or settings.ef_search,
    )
    session.commit()
    t2 = time.perf_counter()
    hits = [
        Hit(
            item_id=r.item_id,
            external_id=r.external_id,
            score=(1.0 - r.distance) * scale,
            kind=r.kind,  # type: ignore[arg-type]
            uri=r.uri,
            text=r.text,
            metadata=r.metadata,
        )
        for r in rows
    ]
    return SearchResult(
        collection=collection.name,
        hits=hits,
        timings_ms={"encode": (t1 - t0) * 1e3, "ann": (t2 - t1) * 1e3},
    )


def _encode_query(
    encoder: Encoder, request: SearchRequest, settings: Settings
) -> dict[str, np.ndarray]:
    parts: dict[str, np.ndarray] = {}
    if request.text is not None:
        text = clean_text(request.text, max_chars=settings.max_text_chars)
        parts["text"] = encoder.encode_texts([text])[0]
    if request.image_bytes is not None:
        image = decode_image(
            request.image_bytes,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
        )
        parts["image"] = encoder.encode_images([image])[0]
    return parts
