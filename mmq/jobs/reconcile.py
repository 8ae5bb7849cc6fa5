"""The reconciler: send again the ingest tasks whose message was lost.

A message is lost when the broker lost it (a crash between two AOF syncs, a flushed or
replaced Redis) or when a worker died holding it and Redis will only give it back after
its visibility timeout. PostgreSQL knows which tasks have not ended: those sent more than
`reconcile_after_s` ago whose lock no live worker holds are sent again. A task sent twice
runs once: the second message finds it done, or locked by the worker running it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import psycopg

from mmq.broker import INGEST_QUEUE, model_queue
from mmq.jobs import claims
from mmq.jobs.records import psycopg_url

log = logging.getLogger(__name__)


# Sends a task's message again: (task id, queue).
Send = Callable[[str, str], None]


def reconcile(conn: psycopg.Connection, send: Send, *, after_s: float) -> list[str]:
    """Send again every stale unfinished task to its queue (a reindex's to its model's);
    returns their ids. `conn` is autocommit."""
    sent = []
    for task_id, model in claims.stale_tasks(conn, queued_after_s=after_s):
        if not claims.try_lock(conn, task_id):
            continue  # a live worker is running it
        # Freed before sending: a worker that found it locked would drop the new message.
        claims.unlock(conn, task_id)
        send(task_id, INGEST_QUEUE if model is None else model_queue(INGEST_QUEUE, model))
        claims.mark_sent(conn, task_id)
        sent.append(task_id)
    if sent:
        log.warning("reconciler sent %d unfinished ingest task(s) again", len(sent))
    return sent


def reconcile_forever(
    database_url: str,
    send: Send,
    *,
    after_s: float,
    every_s: float,
    stop: threading.Event,
    also: Sequence[Callable[[psycopg.Connection], object]] = (),
) -> None:
    """Reconcile every `every_s` until `stop` is set; a failed pass is logged and retried.
    Each pass then calls each of `also` on the same connection: periodic upkeep that
    decides itself when it is due (mmq/jobs/retention.py's PeriodicPrune)."""

    def reconcile_pass(conn: psycopg.Connection) -> None:
        reconcile(conn, send, after_s=after_s)

    while not stop.wait(every_s):
        try:
            with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
                for step in (reconcile_pass, *also):
                    try:  # one failing step does not keep the others from running
                        step(conn)
                    except Exception:
                        name = getattr(step, "__name__", type(step).__name__)
                        log.exception("reconciler thread: %s failed", name)
        except Exception:
            log.exception("reconciler pass failed; trying again in %.0fs", every_s)
