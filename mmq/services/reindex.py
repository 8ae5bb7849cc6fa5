"""Re-embed a collection with another model, in the background, while searches go on.

`mmq reindex` (mmq/jobs/reindex_jobs.py) writes a plan and an ingest job whose tasks hold
item ids; they go to the queue of the new model's workers (`broker.model_queue`). Each
task re-reads its items' originals (the media store's copy, or the path they were
ingested from), encodes them with the new model and writes the vectors beside the old ones
(`reindex_vectors`, `reindex_segments`): searches keep using the old model meanwhile.

The finish task then switches the collection to them (services/reindex_switch.py). A
crash loses nothing: the vectors written stay, and running the command again sends only
the items without one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.errors import Conflict, InvalidInput, MmqError, NotFound, describe
from mmq.schemas import (
    IngestItem,
    ItemResult,
    RawIngestRequest,
)
from mmq.services.encode_items import Interrupts, encode_items
from mmq.services.ingest import Record
from mmq.services.vectors import Space, item_vector, space
from mmq.services.video import index_video
from mmq.store import reindex as store
from mmq.store.repository import get_collection
from mmq.store.segments import SegmentRow
from mmq.store.tables import Collection


def reembed(
    *,
    encoder: Encoder,
    session: Session,
    request: RawIngestRequest,
    settings: Settings,
    record: Record,
    interrupts: Interrupts = (),
) -> None:
    """One task of a reindex job: its items' new vectors, written beside the old ones;
    each item's end recorded (by `record`) in the same commit."""
    assert request.reindex is not None
    collection, target = target_of(encoder, session, request.collection, request.reindex.model)
    results: dict[int, ItemResult] = {}
    ids: dict[int, int] = {}  # request index → item id
    for index, raw in enumerate(request.items):
        item_id = raw.get("item_id") if isinstance(raw, dict) else None
        if isinstance(item_id, int) and not isinstance(item_id, bool):
            ids[index] = item_id
        else:
            bad = InvalidInput(f"a reindex item is {{'item_id': N}}, not {str(raw)[:100]}")
            results[index] = _ended(index, f"item {index}", None, error=describe(bad))
    failures = embed(
        encoder=encoder,
        session=session,
        collection=collection,
        target=target,
        ids=list(ids.values()),
        settings=settings,
        interrupts=interrupts,
    )
    for index, item_id in ids.items():
        error = failures.get(item_id)
        results[index] = _ended(index, f"item {item_id}", item_id, error=error)
    record(session, [results[i] for i in sorted(results)])
    session.commit()


def embed(
    *,
    encoder: Encoder,
    session: Session,
    collection: Collection,
    target: Space,
    ids: list[int],
    settings: Settings,
    interrupts: Interrupts = (),
) -> dict[int, str]:
    """Write the new vectors of the items `ids` (the caller commits); returns item id →
    why, for each item that could not be re-embedded."""
    stored = store.stored_items(session=session, collection_id=collection.id, ids=ids)
    failures: dict[int, str] = {}
    items: list[IngestItem] = []
    order: list[store.StoredItem] = []
    for item_id in ids:
        if item_id not in stored:
            gone = NotFound("deleted from the collection before it was re-embedded")
            failures[item_id] = describe(gone)
            continue
        try:
            items.append(_source(stored[item_id]))
            order.append(stored[item_id])
        except InvalidInput as exc:
            failures[item_id] = describe(exc)
    if not items:
        return failures
    results: dict[int, ItemResult] = {}
    # The originals are where they are: re-embedding never writes to the media store.
    reading = settings.model_copy(update={"keep_originals": "none"})
    decoded, videos = encode_items(
        RawIngestRequest(collection=collection.name, items=items),
        encoder=encoder,
        settings=reading,
        results=results,
        interrupts=interrupts,
    )
    rows: list[store.NewVectors] = []
    for d in decoded:
        item = order[d.index]
        if d.index in results:
            continue
        if d.content_hash != item.content_hash:
            results[d.index] = _changed(d.index, item)
            continue
        try:
            vector = item_vector(
                d.vectors, collection_fusion=target.fusion, autoencoder=target.autoencoder
            )
        except MmqError as exc:
            failures[item.id] = describe(exc)
            continue
        pair = item.kind == "pair"
        rows.append(
            store.NewVectors(
                item.id,
                item.content_hash,
                vector,
                d.vectors.get("image") if pair else None,
                d.vectors.get("text") if pair else None,
            )
        )
    for index, video_item in videos:
        item = order[index]
        try:
            video = index_video(video_item, encoder=encoder, settings=reading)
        except interrupts:
            raise
        except Exception as exc:
            failures[item.id] = describe(exc)
            continue
        if video.content_hash != item.content_hash:
            results[index] = _changed(index, item)
            continue
        rows.append(store.NewVectors(item.id, item.content_hash, _single(video.vector, target)))
        segments = [
            SegmentRow(s.start_s, s.end_s, s.keyframe_s, _single(s.vector, target))
            for s in video.segments
        ]
        store.write_segments(
            session=session, collection_id=collection.id, item_id=item.id, segments=segments
        )
    store.write_vectors(
        session=session, collection_id=collection.id, model_version=target.version, rows=rows
    )
    for index, result in results.items():
        failures[order[index].id] = result.error or "failed"
    return failures


def target_of(
    encoder: Encoder, session: Session, name: str, model: str
) -> tuple[Collection, Space]:
    """The collection and the space of its new vectors, once this worker is known to be
    the right one and the reindex to be the collection's current one."""
    if encoder.name != model:
        raise Conflict(
            f"re-embedding with {model} needs a worker serving it (MMQ_MODEL={model}); this "
            f"one serves {encoder.name}"
        )
    collection = get_collection(session=session, name=name)
    plan = store.get_plan(session=session, collection_id=collection.id)
    if plan is None or plan.model != model or plan.state == "switched":
        raise Conflict(f"collection {name!r} has no reindex to {model} in progress")
    return collection, space(encoder, collection.fusion)  # type: ignore[arg-type]


def _source(item: store.StoredItem) -> IngestItem:
    """The item as an ingest item whose content is read from its original."""
    if item.kind == "text":
        return IngestItem(text=item.text)
    if item.uri is None:
        raise InvalidInput(
            "no original was kept (it arrived as bytes with MMQ_KEEP_ORIGINALS=none)"
        )
    if not Path(item.uri).is_file():
        raise InvalidInput(f"its original is gone: {item.uri}")
    if item.kind == "video":
        return IngestItem(video_path=item.uri)
    return IngestItem(image_path=item.uri, text=item.text if item.kind == "pair" else None)


def _changed(index: int, item: store.StoredItem) -> ItemResult:
    error = InvalidInput(
        f"its original changed since it was ingested: {item.uri} (ingest it again)"
    )
    return _ended(index, item.uri or f"item {item.id}", item.id, error=describe(error))


def _single(vector: np.ndarray, target: Space) -> np.ndarray:
    """A single image vector (a video's, a segment's) as the collection stores it."""
    return item_vector(
        {"image": vector}, collection_fusion=target.fusion, autoencoder=target.autoencoder
    )


def _ended(index: int, source: str, item_id: int | None, *, error: str | None) -> ItemResult:
    return ItemResult(
        index=index,
        source=source,
        external_id=None,
        status="failed" if error else "stored",
        item_id=None if error else item_id,
        error=error,
    )
