"""Ingest one request: decode → encode in batches → fuse → one upsert. Bad items fail alone.

Videos are indexed one at a time (services/video.py) and stored with their segments in
the same transaction as the rest of the request. Good items' originals go to the media
store just before it (services/originals.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.errors import InvalidInput, MmqError, NotFound, Unavailable
from mmq.media.store import MediaStore
from mmq.schemas import IngestItem, IngestResult, ItemResult, RawIngestRequest
from mmq.services.delete import release_media
from mmq.services.encode_items import DecodedItem, Interrupts, encode_items, failed
from mmq.services.originals import keep
from mmq.services.vectors import Space, collection_space, item_vector, space
from mmq.services.video import IndexedVideo, index_video
from mmq.store import repository
from mmq.store.segments import SegmentRow, drop_segments, replace_segments
from mmq.store.tables import Collection

log = logging.getLogger(__name__)

# Sees every item's end before the commit that stores the items (mmq/jobs/claims.py).
Record = Callable[[Session, list[ItemResult]], None]

__all__ = ["Interrupts", "Record", "ingest"]


def ingest(
    *,
    encoder: Encoder,
    session: Session,
    request: RawIngestRequest,
    settings: Settings,
    record: Record | None = None,
    interrupts: Interrupts = (),
) -> IngestResult:
    """Store every valid item of the request; each invalid one gets its own error.

    `record` sees every item's end before the commit that stores the items: what it writes
    in the session is committed with them, or not at all. `interrupts` (a soft time limit)
    are never taken for an item's own failure: they end the whole call."""
    collection, target = _collection(encoder, session, request, settings)
    results: dict[int, ItemResult] = {}
    decoded, videos = encode_items(
        request, encoder=encoder, settings=settings, results=results, interrupts=interrupts
    )
    indexed = _index_videos(encoder, videos, results, settings, interrupts)
    rows = _item_rows(decoded, target, request, results, settings)
    rows += [(index, item, _video_row(item, video, target)) for index, item, video in indexed]
    # A reindex may have switched the collection to another model since it was read: its
    # row is locked in share mode until the commit, and checked (services/reindex.py). What
    # the items replace pointed at: a kept original no item references any more goes.
    old_uris = repository.lock_for_upsert(
        session=session,
        collection=collection,
        model=encoder.name,
        model_version=target.version,
        keys=[row.key for _, _, row in rows],
    )
    ids = repository.upsert_items(
        session=session, collection=collection, rows=[row for _, _, row in rows]
    )
    # An external id re-ingested as an image or text may have been a video before.
    drop_segments(
        session=session,
        item_ids=[
            ids[row.key] for _, item, row in rows if row.key in ids.replaced and not item.is_video
        ],
    )
    for _, item, video in indexed:
        segments = [
            SegmentRow(s.start_s, s.end_s, s.keyframe_s, _expand(s.vector, target))
            for s in video.segments
        ]
        item_id = ids[_key(item, video.content_hash)]
        replace_segments(session=session, collection=collection, item_id=item_id, segments=segments)
    videos_by_index = {index: video for index, _, video in indexed}
    replaced = _replaced(rows, ids.replaced)
    for index, item, row in rows:
        stored_video = videos_by_index.get(index)
        results[index] = ItemResult(
            index=index,
            source=item.source,
            external_id=item.external_id,
            status="stored",
            item_id=ids[row.key],
            replaced=index in replaced,
            duration_s=stored_video.duration_s if stored_video else None,
            segments=len(stored_video.segments) if stored_video else None,
        )
    ended = [results[i] for i in sorted(results)]
    if record is not None:
        record(session, ended)
    session.commit()
    if old_uris:
        release_media(session=session, media=MediaStore(settings.resolved_media_dir), uris=old_uris)
    return IngestResult(collection=collection.name, items=ended)


def _collection(
    encoder: Encoder, session: Session, request: RawIngestRequest, settings: Settings
) -> tuple[Collection, Space]:
    """The request's collection and its space: an existing one's, checked against this
    encoder, or a new collection's (of the request's fusion, or the default), created and
    committed at once: visible to every worker, its creation lock released."""
    try:
        existing = repository.get_collection(session=session, name=request.collection)
    except NotFound:
        pass
    else:
        return existing, collection_space(encoder, existing)
    target = space(encoder, request.fusion or settings.default_fusion)
    collection = repository.ensure_collection(
        session=session,
        name=request.collection,
        model=encoder.name,
        model_version=target.version,
        dim=target.dim,
        fusion=target.fusion,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
    )
    session.commit()
    if collection.fusion != target.fusion:  # created meanwhile, with another fusion
        target = collection_space(encoder, collection)
    return collection, target


def _replaced(
    rows: list[tuple[int, IngestItem, repository.ItemRow]], existed: frozenset[str]
) -> set[int]:
    """The indexes of the items that replaced one, as if stored one by one in the request's
    order: an item whose key had an item before the request, and every later item with
    the key of an earlier one of the request (the upsert keeps the last of them)."""
    seen: set[str] = set()
    replaced = set()
    for index, _, row in sorted(rows, key=lambda r: r[0]):
        if row.key in existed or row.key in seen:
            replaced.add(index)
        seen.add(row.key)
    return replaced


def _item_rows(
    decoded: list[DecodedItem],
    target: Space,
    request: RawIngestRequest,
    results: dict[int, ItemResult],
    settings: Settings,
) -> list[tuple[int, IngestItem, repository.ItemRow]]:
    """The rows of the images, texts and pairs that have not failed, fused as the
    collection fuses, with their originals kept (services/originals.py)."""
    rows = []
    for d in decoded:
        if d.index in results:
            continue
        try:
            vector = item_vector(
                d.vectors,
                collection_fusion=target.fusion,
                weights=request.weights,
                autoencoder=target.autoencoder,
            )
            if d.original is not None:
                d.uri = keep(d.original, settings)
        except MmqError as exc:
            results[d.index] = failed(d.index, d.item, exc)
            continue
        rows.append((d.index, d.item, _row(d, vector)))
    return rows


def _index_videos(
    encoder: Encoder,
    videos: list[tuple[int, IngestItem]],
    results: dict[int, ItemResult],
    settings: Settings,
    interrupts: Interrupts,
) -> list[tuple[int, IngestItem, IndexedVideo]]:
    indexed = []
    for index, item in videos:
        try:
            video = index_video(item, encoder=encoder, settings=settings)
            if video.original is not None:
                video = replace(video, uri=keep(video.original, settings))
            indexed.append((index, item, video))
        except (InvalidInput, Unavailable) as exc:
            results[index] = failed(index, item, exc)
        except interrupts:
            raise
        except Exception as exc:
            log.exception("indexing video %s failed", item.source)
            results[index] = failed(index, item, exc)
    return indexed


def _expand(vector: np.ndarray, target: Space) -> np.ndarray:
    return item_vector(
        {"image": vector}, collection_fusion=target.fusion, autoencoder=target.autoencoder
    )


def _video_row(item: IngestItem, video: IndexedVideo, target: Space) -> repository.ItemRow:
    return repository.ItemRow(
        key=_key(item, video.content_hash),
        external_id=item.external_id,
        kind="video",
        uri=video.uri,
        text=None,
        metadata=item.metadata,
        content_hash=video.content_hash,
        vector=_expand(video.vector, target),
        duration_s=video.duration_s,
    )


def _key(item: IngestItem, content_hash: str) -> str:
    return f"ext:{item.external_id}" if item.external_id else f"sha256:{content_hash}"


def _row(d: DecodedItem, vector: np.ndarray) -> repository.ItemRow:
    return repository.ItemRow(
        key=_key(d.item, d.content_hash),
        external_id=d.item.external_id,
        kind=d.item.kind,
        uri=d.uri,
        text=d.text,
        metadata=d.item.metadata,
        content_hash=d.content_hash,
        vector=vector,
        image_vector=d.vectors.get("image") if d.item.kind == "pair" else None,
        text_vector=d.vectors.get("text") if d.item.kind == "pair" else None,
    )
