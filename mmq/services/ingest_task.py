"""One ingest task run from its state in PostgreSQL: claimed, stored, every item ended.

A message carries only the task's id. The first attempt ingests the whole chunk in
batches. An attempt that did not end (its worker was killed, or it ran out of time)
leaves items pending: later attempts take them one at a time, counting each item's
attempt before it starts, so an item that kills its worker is quarantined once
`max_item_attempts` attempts of it alone did not end, while the others are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import psycopg
from pydantic import ValidationError
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.jobs import store
from mmq.schemas import IngestItem, IngestResult, ItemResult, RawIngestRequest, describe_errors
from mmq.services.ingest import Interrupts, ingest, invalid_item

log = logging.getLogger(__name__)


class UnknownTask(LookupError):
    """The message names a task the database does not hold."""


def register_raw_request(session: Session, *, task_id: str, request: RawIngestRequest) -> None:
    """A whole request sent by a producer that wrote no job (not mmq.Client) becomes a
    one-task job under the message's id, with the same bookkeeping; a redelivery changes
    nothing. Items that are not valid fail now, each with its reason. The caller commits."""
    conn = psycopg_conn(session)
    if store.task_exists(conn, task_id):
        return
    items: list[dict[str, object] | None] = []
    sources: list[tuple[str, str | None]] = []
    invalid: list[ItemResult] = []
    for index, raw in enumerate(request.items):
        try:
            item = IngestItem.model_validate(raw)
        except ValidationError as exc:
            invalid.append(invalid_item(index, raw, exc))
            items.append(None)  # never taken: its row has already ended
            sources.append((invalid[-1].source, invalid[-1].external_id))
            continue
        items.append(item.model_dump(mode="json"))
        sources.append((item.source, item.external_id))
    stored_request = request.model_dump(mode="json") | {"items": items}
    task = store.NewTask(id=task_id, request=stored_request, items=sources)
    store.create_job(conn, job_id=task_id, collection=request.collection, tasks=[task])
    store.record_items(conn, task_id=task_id, first_index=0, results=invalid)


def run_ingest_task(
    *,
    encoder: Encoder,
    engine: Engine,
    sessions: sessionmaker[Session],
    task_id: str,
    settings: Settings,
    interrupts: Interrupts = (),
) -> IngestResult | None:
    """Run the task unless another live worker is running it (then None: this message is
    a duplicate). `interrupts` (a soft time limit) end the attempt with items pending."""
    # The lock lives on a pooled connection of its own (opening one per task costs a
    # server process each time), outside any transaction.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pooled:
        lock = cast(psycopg.Connection, pooled.connection.driver_connection)
        try:
            if not store.try_lock(lock, task_id):
                log.info("task %s is running in another worker; dropping this copy", task_id)
                return None
            with sessions() as session:
                return _run(encoder, session, task_id, settings, interrupts)
        finally:
            release_locks(pooled, lock)


def release_locks(pooled: Connection, lock: psycopg.Connection) -> None:
    """Free every advisory lock before the connection goes back to the pool. If that does
    not happen (an error, or a time limit raised right here), the connection is closed
    instead, which frees them too: a pooled connection never keeps a task locked."""
    try:
        store.unlock_all(lock)
    except BaseException:
        pooled.invalidate()
        raise


def _run(
    encoder: Encoder,
    session: Session,
    task_id: str,
    settings: Settings,
    interrupts: Interrupts,
) -> IngestResult:
    claim = store.claim_task(psycopg_conn(session), task_id)
    session.commit()
    if claim is None:
        raise UnknownTask(f"no ingest task {task_id} in the database")
    first = claim.first_index
    if not claim.done:
        request = _request(session, task_id, claim)
        if request is not None and claim.pending:
            todo = claim.pending
            if claim.attempts == 1:
                todo = _whole_chunk(encoder, session, request, task_id, first, settings, interrupts)
            for local in todo:
                _one_item(encoder, session, request, task_id, first, local, settings, interrupts)
        store.finish_tasks(psycopg_conn(session), [task_id])
        session.commit()
    items = store.item_results(psycopg_conn(session), task_id=task_id, offset=first)
    return IngestResult(collection=str(claim.request.get("collection", "")), items=items)


def _request(session: Session, task_id: str, claim: store.Claim) -> RawIngestRequest | None:
    """The task's request; if it is not a valid one, its pending items fail saying why."""
    try:
        return RawIngestRequest.model_validate(claim.request)
    except ValidationError as exc:
        error = f"invalid request: {describe_errors(exc, 'request')}"
        store.fail_items(
            psycopg_conn(session), task_id=task_id, first_index=claim.first_index,
            local=claim.pending, error=error,
        )  # fmt: skip
        return None


def _whole_chunk(
    encoder: Encoder,
    session: Session,
    request: RawIngestRequest,
    task_id: str,
    first: int,
    settings: Settings,
    interrupts: Interrupts,
) -> list[int]:
    """Ingest every item at once; returns the items left pending (all of them on error).
    No item's attempts are counted here: if this attempt dies, the blame is not known yet."""
    everything = list(range(len(request.items)))
    try:
        ingest(
            encoder=encoder,
            session=session,
            request=request,
            settings=settings,
            record=_recorder(task_id, first),
            interrupts=interrupts,
        )
        return []
    except interrupts:
        raise
    except Exception:
        log.exception("task %s failed as a whole; trying its items one at a time", task_id)
        session.rollback()
        return everything


def _one_item(
    encoder: Encoder,
    session: Session,
    request: RawIngestRequest,
    task_id: str,
    first: int,
    local: int,
    settings: Settings,
    interrupts: Interrupts,
) -> None:
    attempts = store.count_attempt(
        psycopg_conn(session), task_id=task_id, first_index=first, local=[local]
    )
    session.commit()
    if attempts > settings.max_item_attempts:
        conn = psycopg_conn(session)
        previous = store.last_error(conn, task_id=task_id, first_index=first, local=local)
        error = (
            f"quarantined: {attempts - 1} attempts did not finish (the worker died or ran "
            f"out of time){f'; last error: {previous}' if previous else ''}"
        )
        log.error("task %s item %d %s", task_id, local, error)
        store.fail_items(conn, task_id=task_id, first_index=first, local=[local], error=error)
        session.commit()
        return
    alone = request.model_copy(update={"items": [request.items[local]]})
    try:
        ingest(
            encoder=encoder,
            session=session,
            request=alone,
            settings=settings,
            record=_recorder(task_id, first + local),
            interrupts=interrupts,
        )
    except interrupts as exc:
        session.rollback()
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        store.note_error(
            psycopg_conn(session), task_id=task_id, first_index=first, local=local, error=error
        )
        session.commit()
        raise
    except Exception as exc:
        log.exception("task %s item %d failed", task_id, local)
        session.rollback()
        store.fail_items(
            psycopg_conn(session), task_id=task_id, first_index=first, local=[local],
            error=f"{type(exc).__name__}: {exc}",
        )  # fmt: skip
        session.commit()


def _recorder(task_id: str, first: int) -> Callable[[Session, list[ItemResult]], None]:
    def record(session: Session, results: list[ItemResult]) -> None:
        conn = psycopg_conn(session)
        store.record_items(conn, task_id=task_id, first_index=first, results=results)

    return record


def psycopg_conn(session: Session) -> psycopg.Connection:
    # The session's own connection: job rows commit in the same transaction as the items.
    # Asked for again after every commit, which hands the connection back to the pool.
    return cast(psycopg.Connection, session.connection().connection.driver_connection)
