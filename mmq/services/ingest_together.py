"""Several fresh ingest tasks run as one: their bookkeeping shared, their items one request.

A worker that receives one item per message would otherwise pay, for every item, a lock,
a claim and its commit, a collection check, an upsert, the item's record, the task's end
and a commit: most of the CPU an item costs (benchmarks/celery_batches_eval.py). Here the
tasks of a flush are locked in one statement and claimed in one, their items ingested as
one request per collection and options, and every item's end recorded and every task
finished in the commit that stores the items.

Only fresh tasks (never attempted) without videos go together. Any other, and the tasks of
a merged request that failed as a whole, are left to `run_ingest_task`, one at a time: a
video is minutes of work, better in a thread of its own, and an attempted task takes its
items one at a time, so the blame for a failure stays with one item.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import psycopg
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.jobs import store
from mmq.schemas import IngestResult, ItemResult, RawIngestRequest
from mmq.services.ingest import Interrupts, ingest
from mmq.services.ingest_task import psycopg_conn, release_locks

log = logging.getLogger(__name__)

# A task's outcome: its result; None where another worker is running it (this message is
# a copy); "alone" where `run_ingest_task` must run it.
Outcome = IngestResult | None | Literal["alone"]


@dataclass
class _Merged:
    """Fresh tasks with the same collection and options, as one request."""

    request: RawIngestRequest
    tasks: list[str] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # (task, job-wide index)


def run_ingest_tasks_together(
    task_ids: Sequence[str],
    *,
    encoder: Encoder,
    engine: Engine,
    sessions: sessionmaker[Session],
    settings: Settings,
    interrupts: Interrupts = (),
) -> dict[str, Outcome]:
    """Each task's outcome. Locks are freed before this returns, so a task left "alone"
    can be locked again by whoever runs it."""
    ids = list(dict.fromkeys(task_ids))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pooled:
        lock = cast(psycopg.Connection, pooled.connection.driver_connection)
        try:
            locked = store.try_lock_many(lock, ids)
            outcomes: dict[str, Outcome] = dict.fromkeys(ids)  # not locked: running elsewhere
            with sessions() as session:
                outcomes |= _run(encoder, session, locked, settings, interrupts)
        finally:
            release_locks(pooled, lock)
    return outcomes


def _run(
    encoder: Encoder,
    session: Session,
    locked: list[str],
    settings: Settings,
    interrupts: Interrupts,
) -> dict[str, Outcome]:
    claims = store.claim_fresh(psycopg_conn(session), locked)
    session.commit()
    outcomes: dict[str, Outcome] = {t: "alone" for t in locked if t not in claims}
    merged: dict[str, _Merged] = {}
    for task_id, claim in claims.items():
        try:
            request = RawIngestRequest.model_validate(claim.request)
        except ValidationError:
            outcomes[task_id] = "alone"  # which fails its items, saying why
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
                ingest(
                    encoder=encoder,
                    session=session,
                    request=group.request,
                    settings=settings,
                    record=_recorder(group),
                    interrupts=interrupts,
                )
            else:  # every item had already ended (invalid when the job was written)
                store.finish_tasks(psycopg_conn(session), group.tasks)
                session.commit()
            finished += group.tasks
        except interrupts:
            raise
        except Exception:
            log.exception("%d ingest tasks failed as one; each runs alone", len(group.tasks))
            session.rollback()
            outcomes |= dict.fromkeys(group.tasks, "alone")
    outcomes |= store.task_results(psycopg_conn(session), finished)
    return outcomes


def _recorder(group: _Merged) -> Callable[[Session, list[ItemResult]], None]:
    """Every item's end and every task's, in the commit that stores the items."""

    def record(session: Session, results: list[ItemResult]) -> None:
        conn = psycopg_conn(session)
        store.record_ends(conn, [(*group.origins[r.index], r) for r in results])
        store.finish_tasks(conn, group.tasks)

    return record
