"""Re-embed a collection with another model, in the background, while searches go on.

`mmq reindex` (mmq/jobs/reindex_jobs.py) writes a plan and an ingest job whose tasks hold
item ids; they go to the queue of the new model's workers (`broker.model_queue`). Each
task re-reads its items' originals (the media store's copy, or the path they were
ingested from), encodes them with the new model and writes the vectors beside the old ones
(`reindex_vectors`, `reindex_segments`): searches keep using the old model meanwhile.

The finish task waits for the job's tasks, re-embeds what was ingested or changed in the
meantime, and then, holding the collection's lock, switches: every new vector replaces
its old one and the collection is bound to the new model, in one transaction. An item
that cannot be re-embedded (its original is gone) holds the switch until the user decides:
delete it, or run again with `--allow-missing` (it is then deleted at the switch).

A crash loses nothing: the vectors written stay, and running the command again sends only
the items without one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.errors import Conflict, InvalidInput, MmqError, describe
from mmq.jobs.claims import session_conn
from mmq.media.store import MediaStore
from mmq.schemas import (
    IngestItem,
    ItemResult,
    RawIngestRequest,
    ReindexFailure,
    ReindexFinish,
    ReindexResult,
)
from mmq.services.delete import release_media
from mmq.services.encode_items import Interrupts, encode_items
from mmq.services.ingest import Record
from mmq.services.vectors import Space, item_vector, space
from mmq.services.video import index_video
from mmq.store import deletes
from mmq.store import reindex as store
from mmq.store.repository import create_indexes, get_collection
from mmq.store.segments import SegmentRow
from mmq.store.tables import Collection

log = logging.getLogger(__name__)

# Rounds of re-embedding what was ingested while the job ran, before the switch gives up
# on a collection that keeps changing (the next run goes on from there).
CATCH_UP_ROUNDS = 5


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
    collection, target = _target(encoder, session, request.collection, request.reindex.model)
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


def finish(
    *,
    encoder: Encoder,
    session: Session,
    request: ReindexFinish,
    settings: Settings,
    interrupts: Interrupts = (),
) -> ReindexResult | None:
    """Switch the collection to the new model once every item has its new vector; None
    while tasks of the job are still running (the caller asks again later)."""
    unfinished = (
        session_conn(session)
        .execute(
            "SELECT count(*) FROM ingest_tasks WHERE job_id = %s AND state <> 'done'",
            (request.job_id,),
        )
        .fetchone()
    )
    if unfinished is not None and unfinished[0]:
        session.rollback()
        return None
    collection, target = _target(encoder, session, request.collection, request.model)
    plan = store.get_plan(session=session, collection_id=collection.id)
    assert plan is not None  # _target checked it
    if plan.job_id != request.job_id:
        raise Conflict(
            f"the reindex of {collection.name!r} was started again, as job {plan.job_id}"
        )
    failures: dict[int, str] = {}
    for _ in range(CATCH_UP_ROUNDS):
        todo = _without_new_vectors(session, collection, target)
        if set(todo) - set(failures):  # ingested or changed since: embed them, then look again
            failures |= embed(
                encoder=encoder,
                session=session,
                collection=collection,
                target=target,
                ids=[i for i in todo if i not in failures],
                settings=settings,
                interrupts=interrupts,
            )
            session.commit()
            continue
        store.lock_collection(session=session, collection_id=collection.id)
        missing = _without_new_vectors(session, collection, target)
        if set(missing) - set(failures):  # stored between the look and the lock
            session.rollback()
            continue
        return _end(session, encoder, collection, target, plan, missing, failures, settings)
    raise Conflict(
        f"collection {collection.name!r} changed during each of {CATCH_UP_ROUNDS} rounds of "
        "catching up; run `mmq reindex` again when its ingests are over"
    )


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
            failures[item_id] = "NotFound: deleted from the collection before it was re-embedded"
            continue
        try:
            items.append(_source(stored[item_id], settings))
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


def _target(encoder: Encoder, session: Session, name: str, model: str) -> tuple[Collection, Space]:
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


def _without_new_vectors(session: Session, collection: Collection, target: Space) -> list[int]:
    return store.without_new_vectors(
        session=session, collection_id=collection.id, model_version=target.version
    )


def _end(
    session: Session,
    encoder: Encoder,
    collection: Collection,
    target: Space,
    plan: store.Plan,
    missing: list[int],
    failures: dict[int, str],
    settings: Settings,
) -> ReindexResult:
    """With the collection locked: switch, or wait for the user's decision on `missing`."""
    external = _external_ids(session, missing)
    failed = [
        ReindexFailure(item_id=i, external_id=external.get(i), error=failures.get(i, "failed"))
        for i in missing
    ]
    name, done = collection.name, _count(session, collection) - len(missing)
    if missing and not plan.allow_missing:
        error = (
            f"{len(missing)} items could not be re-embedded (first: {failed[0].error}); "
            "delete them, or run `mmq reindex` again with --allow-missing to delete them"
        )
        store.end_plan(session=session, collection_id=collection.id, state="waiting", error=error)
        session.commit()
        log.warning("reindex of %s to %s waits: %s", name, encoder.name, error)
        return ReindexResult(
            collection=name, model=encoder.name, switched=False, items=done, failed=failed
        )
    gone = None
    if missing:
        prefix = str(MediaStore(settings.resolved_media_dir).root) + os.sep
        gone = deletes.delete_items(
            session=session,
            collection=collection,
            external_ids=[],
            item_ids=missing,
            filter=None,
            uri_prefix=prefix,
        )
    resized = store.switch(
        session=session,
        collection=collection,
        model=encoder.name,
        model_version=target.version,
        dim=target.dim,
    )
    store.end_plan(session=session, collection_id=collection.id, state="switched", error=None)
    session.commit()
    if gone is not None:
        media = MediaStore(settings.resolved_media_dir)
        release_media(session=session, media=media, uris=gone.uris)
    if resized:
        session.refresh(collection)
        create_indexes(
            session=session,
            collection=collection,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
        )
        session.commit()
    log.info("collection %s now uses %s (%d items re-embedded)", name, encoder.name, done)
    return ReindexResult(
        collection=name,
        model=encoder.name,
        switched=True,
        items=done,
        failed=failed,
        deleted=len(missing),
    )


def _count(session: Session, collection: Collection) -> int:
    row = (
        session_conn(session)
        .execute("SELECT count(*) FROM items WHERE collection_id = %s", (collection.id,))
        .fetchone()
    )
    return int(row[0]) if row else 0


def _external_ids(session: Session, ids: list[int]) -> dict[int, str | None]:
    rows = (
        session_conn(session)
        .execute("SELECT id, external_id FROM items WHERE id = ANY(%s)", (ids,))
        .fetchall()
    )
    return {int(i): e for i, e in rows}


def _source(item: store.StoredItem, settings: Settings) -> IngestItem:
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
