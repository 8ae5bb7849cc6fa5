"""The ingest task as a `celery_batches.Batches` task, for benchmarks/celery_batches_eval.py.

    MMQ_CB_FLUSH_EVERY=64 MMQ_CB_FLUSH_MS=250 MMQ_WORKER_POOL=threads \\
        celery -A benchmarks.celery_batches_worker worker --pool threads -Q ingest

It takes the production task's name and queue, so `mmq.Client` drives it unchanged.
celery-batches buffers messages and calls the task with up to MMQ_CB_FLUSH_EVERY of them
(or what came within MMQ_CB_FLUSH_MS); their tasks run through the same service as the
production worker's coalesced tasks, `IngestTasks.run_together`. The results are stored
before the function returns, and celery-batches acknowledges the messages only after it
returns (acks_late), so after the commit.

Needs celery-batches, which wants celery < 5.7: install it into a separate target and put
that on PYTHONPATH, never into the project's environment.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, TypeVar

from celery import Celery
from celery.signals import worker_ready
from celery_batches import Batches, SimpleRequest
from pydantic import BaseModel, ValidationError

from mmq.broker import INGEST_TASK, celery_config
from mmq.config import get_settings
from mmq.embedded import resolve_urls
from mmq.errors import BadRequest
from mmq.schemas import IngestResult, IngestTaskMessage, RawIngestRequest, describe_errors
from mmq.services.ingest_tasks import DONE, RUN_ALONE, TaskOutcome, register_raw_request
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)
FLUSH_EVERY = int(os.environ.get("MMQ_CB_FLUSH_EVERY", "64"))
FLUSH_MS = float(os.environ.get("MMQ_CB_FLUSH_MS", "250"))
# For the eval's --check: wait this long after the commit before storing results and returning.
HOLD_S = float(os.environ.get("MMQ_CB_HOLD_AFTER_COMMIT_S", "0"))
M = TypeVar("M", bound=BaseModel)


def _config() -> dict[str, Any]:
    settings = get_settings()
    # The buffer holds unacknowledged messages: with a prefetch limit below flush_every it
    # would never fill, so ask for no limit (0).
    return celery_config(resolve_urls(settings), settings) | {"worker_prefetch_multiplier": 0}


app = Celery("mmq-batches")
app.add_defaults(_config)


@worker_ready.connect
def _load_model(**_: Any) -> None:
    get_runtime().check_schema()


@app.task(
    base=Batches,
    name=INGEST_TASK,
    flush_every=FLUSH_EVERY,
    flush_interval=FLUSH_MS / 1000,
    acks_late=True,
)
def ingest_batch(requests: list[SimpleRequest]) -> None:
    rt = get_runtime()
    task_of: dict[str, str] = {}  # message id -> its task
    results: dict[str, IngestResult | Exception | None] = {}  # by message id
    for r in requests:
        try:
            task_of[r.id] = _task_id(rt, r)
        except Exception as exc:
            results[r.id] = exc
    outcomes: dict[str, TaskOutcome]
    try:
        outcomes = rt.ingest_tasks.run_together(list(task_of.values()))
    except Exception:  # as the production Coalescer's fallback: each task runs alone
        log.exception("%d ingest tasks failed together", len(task_of))
        outcomes = dict.fromkeys(task_of.values(), RUN_ALONE)
    by_task = {t: _ended(rt, t, o) for t, o in outcomes.items()}
    results |= {m: by_task[t] for m, t in task_of.items()}
    if HOLD_S:
        time.sleep(HOLD_S)
    for r in requests:
        outcome = results[r.id]
        if isinstance(outcome, IngestResult):
            app.backend.mark_as_done(r.id, outcome.model_dump(mode="json"), request=r)
        elif isinstance(outcome, Exception):
            # A SimpleRequest has no errbacks: asking for them would raise.
            app.backend.mark_as_failure(r.id, outcome, request=r, call_errbacks=False)
        # None: another worker runs that task and stores its result (production's Ignore).


def _task_id(rt: Runtime, r: SimpleRequest) -> str:
    """The message's task; a whole request (no job written by its producer) is registered
    as a one-task job under the message's id first, as workers/tasks.py does."""
    payload = r.args[0] if len(r.args) == 1 else None
    if isinstance(payload, dict) and "task_id" not in payload:
        request = _parse(RawIngestRequest, payload)
        with rt.sessions() as session:
            register_raw_request(session, task_id=r.id, request=request)
            session.commit()
        return str(r.id)
    return _parse(IngestTaskMessage, payload).task_id


def _parse(model: type[M], payload: object) -> M:
    # As workers/tasks.py's (not imported: that brings the production app's worker signals).
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise BadRequest(f"invalid request: {describe_errors(exc)}") from None


def _ended(rt: Runtime, task_id: str, outcome: TaskOutcome) -> IngestResult | Exception | None:
    """The task's result, run alone first if it must be; None for another worker's copy."""
    try:
        if outcome == RUN_ALONE:
            outcome = rt.ingest_tasks.run_alone(task_id)
        return rt.ingest_tasks.results([task_id])[task_id] if outcome == DONE else None
    except Exception as exc:
        log.exception("ingest task %s failed", task_id)
        return exc
