"""The end of a reindex (services/reindex.py): once the job's tasks are done, re-embed
what was ingested or changed in the meantime, then, holding the collection's lock,
switch: every new vector replaces its old one and the collection is bound to the new
model, in one transaction. An item that cannot be re-embedded (its original is gone) holds
the switch until the user decides: delete it, or run again with `--allow-missing` (it is
then deleted at the switch)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.errors import Conflict
from mmq.media.store import MediaStore
from mmq.schemas import ReindexFailure, ReindexFinish, ReindexResult
from mmq.services.delete import release_media
from mmq.services.encode_items import Interrupts
from mmq.services.reindex import embed, target_of
from mmq.services.vectors import Space
from mmq.store import deletes
from mmq.store import reindex as store
from mmq.store.repository import create_indexes, get_collection
from mmq.store.tables import Collection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """The job's tasks are not all done: `tasks_left` of them."""

    tasks_left: int


# Rounds of re-embedding what was ingested while the job ran, before the switch gives up
# on a collection that keeps changing (the next run goes on from there).
CATCH_UP_ROUNDS = 5


def finish(
    *,
    encoder: Encoder,
    session: Session,
    request: ReindexFinish,
    settings: Settings,
    interrupts: Interrupts = (),
) -> ReindexResult | Pending:
    """Switch the collection to the new model once every item has its new vector; Pending
    while tasks of the job are still running (the caller asks again later)."""
    left = store.unfinished_tasks(session=session, job_id=request.job_id)
    if left:
        session.rollback()
        return Pending(left)
    done = _switched_already(session, request)
    if done is not None:  # this message again, after the switch (its worker died before the ack)
        return done
    collection, target = target_of(encoder, session, request.collection, request.model)
    plan = store.get_plan(session=session, collection_id=collection.id)
    assert plan is not None  # target_of checked it
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


def _switched_already(session: Session, request: ReindexFinish) -> ReindexResult | None:
    collection = get_collection(session=session, name=request.collection)
    plan = store.get_plan(session=session, collection_id=collection.id)
    if plan is None or (plan.job_id, plan.state) != (request.job_id, "switched"):
        return None
    items = store.count_items(session=session, collection_id=collection.id)
    return ReindexResult(collection=collection.name, model=plan.model, switched=True, items=items)


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
    external = store.external_ids(session=session, ids=missing)
    failed = [
        ReindexFailure(item_id=i, external_id=external.get(i), error=failures.get(i, "failed"))
        for i in missing
    ]
    name, done = (
        collection.name,
        store.count_items(session=session, collection_id=collection.id) - len(missing),
    )
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
    media = MediaStore(settings.resolved_media_dir)
    if missing:
        gone = deletes.delete_items(
            session=session,
            collection=collection,
            external_ids=[],
            item_ids=missing,
            filter=None,
            uri_prefix=media.uri_prefix,
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
