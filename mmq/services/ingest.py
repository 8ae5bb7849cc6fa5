"""Ingest: decode → encode in batches → fuse → one upsert. Bad items fail alone.

Videos are indexed one at a time (services/video.py) and stored with their segments in
the same transaction as the rest of the request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import numpy as np
from pydantic import ValidationError
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import default_batch_size
from mmq.fusion import fused_dim
from mmq.media import MediaError, Picture, clean_text, confined, decode_image, read_image_bytes
from mmq.schemas import (
    FusionName,
    IngestItem,
    IngestResult,
    ItemResult,
    RawIngestRequest,
    describe_errors,
)
from mmq.services.vectors import item_vector
from mmq.services.video import IndexedVideo, index_video
from mmq.store import repository
from mmq.store.segments import SegmentRow, drop_segments, replace_segments

log = logging.getLogger(__name__)

# Images per submission to the encoder: small, so the model starts early; the batching
# encoder merges submissions from all tasks into batches of MMQ_ENCODE_BATCH_SIZE.
SUBMIT_EVERY = 4

# Exceptions that end an ingest call instead of failing the item they hit.
Interrupts = tuple[type[BaseException], ...]


@dataclass
class _Decoded:
    index: int
    item: IngestItem
    image: Picture | None  # an EncodedJpeg where the encoder decodes JPEGs itself
    text: str | None
    content_hash: str
    uri: str | None
    vectors: dict[str, np.ndarray]


def ingest(
    *,
    encoder: Encoder,
    session: Session,
    request: RawIngestRequest,
    settings: Settings,
    record: Callable[[Session, list[ItemResult]], None] | None = None,
    interrupts: Interrupts = (),
) -> IngestResult:
    """Store every valid item of the request; each invalid one gets its own error.

    `record` sees every item's end before the commit that stores the items: what it writes
    in the session is committed with them, or not at all. `interrupts` (a soft time limit)
    are never taken for an item's own failure: they end the whole call."""
    new_fusion = request.fusion or settings.default_fusion  # if the collection is new
    collection = repository.ensure_collection(
        session=session,
        name=request.collection,
        model=encoder.name,
        model_version=encoder.version,
        dim=fused_dim(new_fusion, encoder.dim),
        fusion=new_fusion,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
    )
    session.commit()  # a new collection is visible (and its creation lock released) at once
    results: dict[int, ItemResult] = {}
    decoded: list[_Decoded] = []
    videos: list[tuple[int, IngestItem]] = []
    # Images go to the encoder a few at a time as they are decoded: with a batching encoder
    # the model works on the first ones while this thread decodes the rest.
    submitted: list[tuple[list[_Decoded], Future[np.ndarray]]] = []
    waiting: list[_Decoded] = []
    for index, raw in enumerate(request.items):
        try:
            item = IngestItem.model_validate(raw)
        except ValidationError as exc:
            results[index] = invalid_item(index, raw, exc)
            continue
        try:
            _check_metadata(item, settings)
            if item.is_video:
                videos.append((index, item))
                continue
            d = _decode(index, item, settings, encoder)
        except MediaError as exc:
            results[index] = _failed(index, item, str(exc))
            continue
        decoded.append(d)
        if d.image is not None:
            waiting.append(d)
        if len(waiting) >= SUBMIT_EVERY:
            submitted.append(_submit_images(encoder, waiting))
            waiting = []
    if waiting:
        submitted.append(_submit_images(encoder, waiting))

    _collect_images(encoder, submitted, results, interrupts)
    batch_size = settings.encode_batch_size or default_batch_size(encoder.device)
    _encode_texts(encoder, decoded, results, batch_size, interrupts)
    indexed = _index_videos(encoder, videos, results, settings, interrupts)

    fusion: FusionName = collection.fusion  # type: ignore[assignment]
    rows: list[tuple[int, IngestItem, repository.ItemRow]] = []
    for d in decoded:
        if d.index in results:
            continue
        try:
            vector = item_vector(d.vectors, collection_fusion=fusion, weights=request.weights)
        except ValueError as exc:
            results[d.index] = _failed(d.index, d.item, str(exc))
            continue
        rows.append((d.index, d.item, _row(d, vector)))
    rows.extend((index, item, _video_row(item, video, fusion)) for index, item, video in indexed)
    ids = repository.upsert_items(
        session=session, collection=collection, rows=[row for _, _, row in rows]
    )
    # An external id re-ingested as an image or text may have been a video before.
    drop_segments(
        session=session,
        item_ids=[ids[row.key] for _, item, row in rows if not item.is_video],
    )
    for _, item, video in indexed:
        segments = [
            SegmentRow(s.start_s, s.end_s, s.keyframe_s, _expand(s.vector, fusion))
            for s in video.segments
        ]
        item_id = ids[_key(item, video.content_hash)]
        replace_segments(session=session, collection=collection, item_id=item_id, segments=segments)
    videos_by_index: dict[int, IndexedVideo] = {index: video for index, _, video in indexed}
    for index, item, row in rows:
        stored_video = videos_by_index.get(index)
        results[index] = ItemResult(
            index=index,
            source=item.source,
            external_id=item.external_id,
            status="stored",
            item_id=ids[row.key],
            duration_s=stored_video.duration_s if stored_video else None,
            segments=len(stored_video.segments) if stored_video else None,
        )
    ended = [results[i] for i in sorted(results)]
    if record is not None:
        record(session, ended)
    session.commit()
    return IngestResult(collection=collection.name, items=ended)


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
            indexed.append((index, item, index_video(item, encoder=encoder, settings=settings)))
        except MediaError as exc:
            results[index] = _failed(index, item, str(exc))
        except interrupts:
            raise
        except Exception as exc:
            log.exception("indexing video %s failed", item.source)
            results[index] = _failed(index, item, f"video: {type(exc).__name__}: {exc}")
    return indexed


def _expand(vector: np.ndarray, fusion: FusionName) -> np.ndarray:
    return item_vector({"image": vector}, collection_fusion=fusion)


def _video_row(item: IngestItem, video: IndexedVideo, fusion: FusionName) -> repository.ItemRow:
    return repository.ItemRow(
        key=_key(item, video.content_hash),
        external_id=item.external_id,
        kind="video",
        uri=video.uri,
        text=None,
        metadata=item.metadata,
        content_hash=video.content_hash,
        vector=_expand(video.vector, fusion),
        duration_s=video.duration_s,
    )


def _key(item: IngestItem, content_hash: str) -> str:
    return f"ext:{item.external_id}" if item.external_id else f"sha256:{content_hash}"


def _decode(index: int, item: IngestItem, settings: Settings, encoder: Encoder) -> _Decoded:
    digest = hashlib.sha256()
    image = text = uri = None
    if item.image_path is not None or item.image_bytes is not None:
        if item.image_path is not None:
            path = confined(item.image_path, settings.resolved_ingest_roots)
            data = read_image_bytes(path, max_bytes=settings.max_image_bytes)
            uri = item.image_path
        else:
            data = item.image_bytes or b""
        image = decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=encoder.decode_side,
            keep_jpeg=encoder.decodes_jpeg,
        )
        digest.update(b"image:" + hashlib.sha256(data).digest())
    if item.text is not None:
        text = clean_text(item.text, max_chars=settings.max_text_chars)
        digest.update(b"text:" + text.encode())
    return _Decoded(index, item, image, text, digest.hexdigest(), uri, {})


def _check_metadata(item: IngestItem, settings: Settings) -> None:
    size = len(json.dumps(item.metadata).encode())
    if size > settings.max_metadata_bytes:
        raise MediaError(f"metadata is {size} bytes, the limit is {settings.max_metadata_bytes}")


def _submit_images(
    encoder: Encoder, batch: list[_Decoded]
) -> tuple[list[_Decoded], Future[np.ndarray]]:
    return batch, encoder.submit_images([d.image for d in batch if d.image is not None])


def _collect_images(
    encoder: Encoder,
    submitted: list[tuple[list[_Decoded], Future[np.ndarray]]],
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> None:
    """Wait for the submitted image batches."""
    for batch, future in submitted:
        _store_vectors(encoder, "image", batch, future.result, results, interrupts)


def _encode_texts(
    encoder: Encoder,
    decoded: list[_Decoded],
    results: dict[int, ItemResult],
    batch_size: int,
    interrupts: Interrupts,
) -> None:
    todo = [d for d in decoded if d.text is not None]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        texts = [d.text for d in batch if d.text is not None]
        encode = partial(encoder.encode_texts, texts)
        _store_vectors(encoder, "text", batch, encode, results, interrupts)


def _store_vectors(
    encoder: Encoder,
    modality: str,
    batch: list[_Decoded],
    encode: Callable[[], np.ndarray],
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> None:
    """The batch's vectors from `encode`; if the batch failed, each item is retried alone."""
    try:
        vectors = encode()
    except interrupts:
        raise
    except Exception:
        log.exception("batch encode failed; isolating the bad item")
        _encode_alone(encoder, modality, batch, results, interrupts)
        return
    for d, vector in zip(batch, vectors, strict=True):
        d.vectors[modality] = vector


def _encode_alone(
    encoder: Encoder,
    modality: str,
    batch: list[_Decoded],
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> None:
    for d in batch:
        try:
            if modality == "image":
                d.vectors["image"] = encoder.encode_images(
                    [d.image] if d.image is not None else []
                )[0]
            else:
                d.vectors["text"] = encoder.encode_texts([d.text] if d.text is not None else [])[0]
        except interrupts:
            raise
        except Exception as exc:
            results[d.index] = _failed(d.index, d.item, f"{modality} encoder: {exc}")


def _row(d: _Decoded, vector: np.ndarray) -> repository.ItemRow:
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


def invalid_item(index: int, raw: object, exc: ValidationError) -> ItemResult:
    """The failure of an item that is not a valid IngestItem, with what is wrong in it."""
    fields = raw if isinstance(raw, dict) else {}
    external_id = fields.get("external_id")
    external_id = _printable(external_id[:512]) if isinstance(external_id, str) else None
    source = fields.get("image_path") or fields.get("video_path") or external_id
    errors = describe_errors(exc, "item")
    return ItemResult(
        index=index,
        source=_printable(str(source)[:200]) if source else f"<item {index}>",
        external_id=external_id,
        status="failed",
        error=f"invalid item: {errors}",
    )


def _printable(text: str) -> str:
    """An invalid item's own strings, made safe to store and show in its result."""
    text = text.encode("utf-8", "replace").decode()
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _failed(index: int, item: IngestItem, error: str) -> ItemResult:
    return ItemResult(
        index=index,
        source=item.source,
        external_id=item.external_id,
        status="failed",
        error=error,
    )
