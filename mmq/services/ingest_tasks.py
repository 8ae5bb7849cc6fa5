"""Ingest tasks run from their state in PostgreSQL: locked, claimed, every item ended.

A message carries only its task's id; the request is in the task's row. A task runs one of
two ways, with the same locks, claims and records (`mmq/jobs/claims.py`):

- **together**: fresh tasks (never attempted, no video) that a worker received at the same
  moment are locked in one statement and claimed in one; their items are ingested as one
  request per collection and options, and every item's end and every task's end are
  recorded in the commit that stores the items. One item per message then costs little
  more than an item of a large message.
- **alone**: any task. A first attempt ingests the whole chunk at once. An attempt that did
  not end (its worker was killed, or it ran out of time) leaves items pending; later
  attempts take them one at a time and count each item's attempt before it starts, so an
  item that kills its worker is quarantined after `max_item_attempts`, and the others are
  stored. A video is minutes of work, better in a thread of its own: it always runs alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.errors import BadRequest, InvalidInput, NotFound, describe
from mmq.jobs import claims, records
from mmq.jobs.claims import Origin, session_conn
from mmq.schemas import IngestItem, IngestResult, ItemResult, RawIngestRequest, describe_errors
from mmq.services.encode_items import invalid_item
from mmq.services.ingest import Interrupts, Record, ingest
from mmq.services.reindex import reembed

log = logging.getLogger(__name__)


# What became of one task's message: `done` (every item ended; `IngestTasks.results` says
# how), `duplicate` (another live worker holds the task: this message is a copy, its result
# stands there), or `run_alone` (not run yet: `IngestTasks.run_alone` must run it).
TaskOutcome = Literal["done", "duplicate", "run_alone"]
DONE: TaskOutcome = "done"
DUPLICATE: TaskOutcome = "duplicate"
RUN_ALONE: TaskOutcome = "run_alone"


@dataclass
class _Merged:
    """Fresh tasks with the same collection and options, as one request."""

    request: RawIngestRequest
    tasks: list[str] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)  # of each item of `request`


@dataclass
class IngestTasks:
    """Runs ingest tasks for one worker process. `interrupts` (a soft time limit) end an
    attempt with its items still pending instead of failing the item they hit."""

    encoder: Encoder
    engine: Engine
    sessions: sessionmaker[Session]
    settings: Settings
    interrupts: Interrupts = ()

    def run_alone(self, task_id: str) -> TaskOutcome:
        with claims.locked_tasks(self.engine, [task_id]) as locked:
            if not locked:
                log.info("task %s is running in another worker; dropping this copy", task_id)
                return DUPLICATE
            with self.sessions() as session:
                self._alone(session, task_id)
                return DONE

    def results(self, task_ids: Sequence[str]) -> dict[str, IngestResult]:
        """Each done task's result, its items indexed from the task's first. Only a producer
        that wrote no job reads it (through the result backend); mmq.Client reads the job."""
        with self.sessions() as session:
            return records.task_results(session_conn(session), task_ids)

    def forgive_outage(self, task_id: str) -> None:
        """The task's last attempt ended because PostgreSQL went away: it does not count
        toward its items' quarantine (`claims.forgive_attempt`)."""
        with claims.locked_tasks(self.engine, [task_id]) as locked, self.sessions() as session:
            if locked:  # else another worker runs it now: its attempt counts
                claims.forgive_attempt(session_conn(session), task_id)
                session.commit()

    def run_together(self, task_ids: Sequence[str]) -> dict[str, TaskOutcome]:
        """Each task's outcome. The locks are freed before this returns, so a task left to
        run alone can be locked again by whoever runs it."""
        with claims.locked_tasks(self.engine, task_ids) as locked:
            outcomes = dict.fromkeys(task_ids, DUPLICATE)  # not locked: running elsewhere
            with self.sessions() as session:
                outcomes |= self._together(session, locked)
        return outcomes

    def _together(self, session: Session, locked: list[str]) -> dict[str, TaskOutcome]:
        fresh = claims.claim_fresh(session_conn(session), locked)
        session.commit()
        outcomes = {t: RUN_ALONE for t in locked if t not in fresh}
        merged: dict[str, _Merged] = {}
        for task_id, claim in fresh.items():
            try:
                request = RawIngestRequest.model_validate(claim.request)
            except ValidationError:
                outcomes[task_id] = RUN_ALONE  # which fails its items, saying why
                continue
            key = json.dumps(request.model_dump(mode="json", exclude={"items"}), sort_keys=True)
            group = merged.setdefault(key, _Merged(request.model_copy(update={"items": []})))
            group.tasks.append(task_id)
            for local in claim.pending:
                group.request.items.append(request.items[local])
                group.origins.append((task_id, claim.first_index + local))
        finished: list[str] = []
        for group in merged.values():
            try:
                if group.request.items:
                    self._ingest(session, group.request, _recorder(group.origins, group.tasks))
                else:  # every item had already ended (invalid when the job was written)
                    claims.finish_tasks(session_conn(session), group.tasks)
                    session.commit()
                finished += group.tasks
            except self.interrupts:
                raise
            except Exception:
                log.exception("%d ingest tasks failed as one; each runs alone", len(group.tasks))
                session.rollback()
                outcomes |= dict.fromkeys(group.tasks, RUN_ALONE)
        return outcomes | dict.fromkeys(finished, DONE)

    def _alone(self, session: Session, task_id: str) -> None:
        claim = claims.claim_task(session_conn(session), task_id)
        session.commit()
        if claim is None:
            raise NotFound(f"no ingest task {task_id} in the database")
        if not claim.done:
            origins = [(task_id, claim.first_index + local) for local in claim.pending]
            request = self._request(session, claim, origins)
            if request is not None and claim.pending:
                todo = claim.pending
                if claim.attempts == 1:
                    todo = self._whole_chunk(session, request, task_id, claim.first_index)
                for local in todo:
                    self._one_item(session, request, local, (task_id, claim.first_index + local))
            claims.finish_tasks(session_conn(session), [task_id])
            session.commit()

    def _request(
        self, session: Session, claim: claims.Claim, pending: list[Origin]
    ) -> RawIngestRequest | None:
        """The task's request; if it is not a valid one, its pending items fail saying why."""
        try:
            return RawIngestRequest.model_validate(claim.request)
        except ValidationError as exc:
            error = BadRequest(f"invalid request: {describe_errors(exc)}")
            claims.fail_pending(session_conn(session), pending, describe(error))
            return None

    def _whole_chunk(
        self, session: Session, request: RawIngestRequest, task_id: str, first: int
    ) -> list[int]:
        """Ingest every item at once; returns the items left pending (all of them on error).
        No item's attempts are counted here: if this attempt dies, the blame is not known."""
        everything = list(range(len(request.items)))
        try:
            self._ingest(session, request, _recorder([(task_id, first + i) for i in everything]))
            return []
        except self.interrupts:
            raise
        except Exception:
            log.exception("task %s failed as a whole; trying its items one at a time", task_id)
            session.rollback()
            return everything

    def _one_item(
        self, session: Session, request: RawIngestRequest, local: int, origin: Origin
    ) -> None:
        # The attempt is counted before the item runs (so a death while it runs counts), and
        # a quarantine is committed with its count: a death in between changes nothing.
        attempts = claims.count_attempt(session_conn(session), origin)
        if attempts > self.settings.max_item_attempts:
            previous = claims.last_error(session_conn(session), origin)
            error = InvalidInput(
                f"quarantined: {attempts - 1} attempts did not finish (the worker died or ran "
                f"out of time){f'; last error: {previous}' if previous else ''}"
            )
            claims.fail_pending(session_conn(session), [origin], describe(error))
            session.commit()
            log.error("task %s item %d %s", origin[0], local, error)
            return
        session.commit()
        alone = request.model_copy(update={"items": [request.items[local]]})
        try:
            self._ingest(session, alone, _recorder([origin]))
        except self.interrupts as exc:
            # The attempt ends with the item pending; its error is kept for its quarantine.
            session.rollback()
            interrupted = f"{type(exc).__name__}: {exc}".rstrip(": ")
            claims.note_error(session_conn(session), origin, interrupted)
            session.commit()
            raise
        except Exception as exc:
            log.exception("task %s item %d failed", origin[0], local)
            session.rollback()
            claims.fail_pending(session_conn(session), [origin], describe(exc))
            session.commit()

    def _ingest(self, session: Session, request: RawIngestRequest, record: Record) -> None:
        # A reindex's request names stored items, re-embedded beside their vectors.
        run = ingest if request.reindex is None else reembed
        run(
            encoder=self.encoder,
            session=session,
            request=request,
            settings=self.settings,
            record=record,
            interrupts=self.interrupts,
        )


def _recorder(origins: Sequence[Origin], finish: Sequence[str] = ()) -> Record:
    """Records each item's end (and finishes `finish` tasks) in the commit that stores the
    items; item `i` of the ingested request is the item at `origins[i]`."""

    def record(session: Session, results: list[ItemResult]) -> None:
        claims.record_ends(session_conn(session), [(origins[r.index], r) for r in results], finish)

    return record


def register_raw_request(session: Session, *, task_id: str, request: RawIngestRequest) -> None:
    """A whole request sent by a producer that wrote no job (not mmq.Client) becomes a
    one-task job under the message's id, with the same bookkeeping; a redelivery changes
    nothing. Items that are not valid fail now, each with its reason. The caller commits."""
    conn = session_conn(session)
    if records.task_exists(conn, task_id):
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
    task = records.NewTask(id=task_id, request=stored_request, items=sources)
    records.create_job(conn, job_id=task_id, collection=request.collection, tasks=[task])
    claims.record_ends(conn, [((task_id, r.index), r) for r in invalid])
