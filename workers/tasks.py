"""Thin Celery tasks: parse the JSON payload, call the service, return JSON."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from mmq import services
from mmq.broker import (
    DELETE_TASK,
    INGEST_TASK,
    PING_TASK,
    RECOMMEND_TASK,
    REINDEX_FINISH_TASK,
    SEARCH_TASK,
)
from mmq.errors import BadRequest, Unavailable, WrongModel
from mmq.media.store import MediaStore
from mmq.schemas import (
    DeleteRequest,
    IngestTaskMessage,
    RawIngestRequest,
    RecommendRequest,
    ReindexFinish,
    SearchRequest,
    describe_errors,
)
from mmq.services.delete import delete as delete_items
from mmq.services.ingest_tasks import register_raw_request
from mmq.services.recommend import recommend as recommend_items
from mmq.services.reindex_switch import Pending
from mmq.services.reindex_switch import finish as finish_reindex
from mmq.store.db import DATABASE_DOWN
from workers.app import app
from workers.forward import forward_search
from workers.runtime import get_database, get_runtime

M = TypeVar("M", bound=BaseModel)
log = logging.getLogger(__name__)

# How long the end of a reindex waits before it looks again whether its chunks are done:
# while the last ones run, and before.
REINDEX_POLL_S = (0.2, 2.0)


def _parse(model: type[M], payload: object) -> M:
    # Pydantic's ValidationError does not survive Celery's JSON result encoding (producers
    # would read "ValidationError([])"); one of mmq's errors, built from a message, does.
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {describe_errors(exc)}") from None


# max_retries=None here means no limit: an attempt that runs out of time is retried with its
# pending items one at a time, and each of them is quarantined after max_item_attempts. (In
# `self.retry` a None means the task's own limit, which is why it is set here.)
@app.task(name=INGEST_TASK, bind=True, max_retries=None)
def ingest(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    task_id = str(self.request.id)
    try:
        rt.check_schema()
        if "task_id" in payload:
            message = _parse(IngestTaskMessage, payload)
            task_id = message.task_id
            if message.outage:
                rt.ingest_tasks.forgive_outage(task_id)
        else:
            # A whole request, from a producer that wrote no job (not mmq.Client).
            request = _parse(RawIngestRequest, payload)
            with rt.sessions() as session:
                register_raw_request(session, task_id=task_id, request=request)
                session.commit()
        outcome = rt.run_ingest(task_id)
    except SoftTimeLimitExceeded as exc:
        # Its pending items are tried again one at a time, each counting an attempt.
        raise self.retry(exc=exc, countdown=1) from exc
    except DATABASE_DOWN as exc:
        # PostgreSQL went away: its items stay pending, nothing was half-written (every
        # write commits with its items). Tried again, later each time, not counted.
        log.warning("ingest task %s: PostgreSQL is not answering; trying again", task_id)
        again = {"task_id": task_id, "outage": True}
        raise self.retry(exc=exc, args=[again], countdown=backoff_s(self.request.retries)) from exc
    if outcome == "duplicate":
        raise Ignore()  # a copy of a task another worker is running: its result stands
    if self.request.ignore_result:  # mmq.Client's: the job's rows are the result
        return {}
    return rt.ingest_tasks.results([task_id])[task_id].model_dump(mode="json")


@app.task(name=SEARCH_TASK, bind=True)
def search(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    request = _parse(SearchRequest, payload)
    # Queries that arrive together share a forward pass (mmq/encoders/batching.py).
    coming = rt.encoder.text_coming() if request.text is not None else nullcontext()
    with coming, database_answers():
        rt.check_schema()
        with rt.sessions() as session:
            one_snapshot(session)
            try:
                result = services.search(
                    encoder=rt.encoder, session=session, request=request, settings=rt.settings
                )
            except WrongModel as exc:
                forward_search(self, payload, exc)
    return result.model_dump(mode="json")


@app.task(name=RECOMMEND_TASK)
def recommend(payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    request = _parse(RecommendRequest, payload)
    with database_answers():
        rt.check_schema()
    with database_answers(), rt.sessions() as session:
        one_snapshot(session)
        result = recommend_items(session=session, request=request, settings=rt.settings)
    return result.model_dump(mode="json")


@app.task(name=DELETE_TASK)
def delete(payload: dict[str, Any]) -> dict[str, Any]:
    request = _parse(DeleteRequest, payload)
    with database_answers():
        db = get_database()  # no model: deleting encodes nothing
    with database_answers(), db.sessions() as session:
        result = delete_items(
            session=session, request=request, media=MediaStore(db.settings.resolved_media_dir)
        )
    return result.model_dump(mode="json")


# A reindex's chunks run as ingest tasks (services/ingest_tasks.py); this task waits for
# them, then switches the collection. It asks again every few seconds, without limit.
@app.task(name=REINDEX_FINISH_TASK, bind=True, max_retries=None)
def reindex_finish(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
    rt = get_runtime()
    request = _parse(ReindexFinish, payload)
    try:
        rt.check_schema()
        with rt.sessions() as session:
            result = finish_reindex(
                encoder=rt.encoder, session=session, request=request, settings=rt.settings
            )
    except DATABASE_DOWN as exc:
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
    if isinstance(result, Pending):
        # Often once the last tasks run (they run together: up to MMQ_INGEST_COALESCE at
        # once), where each wait adds to the reindex's time; seldom before.
        last = result.tasks_left <= max(1, rt.settings.ingest_coalesce)
        raise self.retry(countdown=REINDEX_POLL_S[0] if last else REINDEX_POLL_S[1])
    return result.model_dump(mode="json")


def backoff_s(retries: int) -> float:
    """Seconds before trying again a task PostgreSQL's absence ended: doubling, at most 30."""
    return min(30.0, 0.5 * 2 ** min(retries, 6))


@contextmanager
def database_answers() -> Iterator[None]:
    """A search's (or a delete's) producer waits for its answer: PostgreSQL not answering
    is said plainly, as one of mmq's errors, and the next task reconnects by itself."""
    try:
        yield
    except DATABASE_DOWN as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unavailable(f"PostgreSQL is not answering: {reason}") from None


def one_snapshot(session: Session) -> None:
    """Every read of the transaction sees the database as it was at its first: a reindex
    that switches the collection meanwhile is seen whole or not at all."""
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


@app.task(name=PING_TASK)
def ping() -> str:
    return "pong"
