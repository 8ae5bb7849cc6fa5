"""Retention: the rows of ingest jobs that ended long ago are deleted.

A job's rows (the job, its tasks with their requests, a row per item with its end) are
what `Client.job(id)` and `mmq status` read; they are never needed once the producer has
read them, and grow with every item ever ingested. A job is pruned once every task of it
is done and it was created more than `MMQ_JOB_RETENTION_DAYS` ago, by the workers
(`PeriodicPrune`, from the reconciler's thread) and by `mmq jobs prune`. A pruned job is
unknown: `Client.job(id).status().state == "unknown"`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from psycopg import Connection

from mmq.errors import BadRequest

log = logging.getLogger(__name__)

# Jobs deleted per statement: each batch is a short transaction of its own, so pruning a
# long backlog never holds locks on a large part of the tables at once.
BATCH = 500

# Tasks and items go with their job (ON DELETE CASCADE, migrations/versions/0003). A job
# another pruner is deleting right now is skipped, not waited for: concurrent workers
# never conflict. Ended: no task is left that is not done (a job with unfinished tasks is
# kept however old, for the reconciler to finish).
_PRUNE = """
DELETE FROM ingest_jobs WHERE id IN (
    SELECT j.id FROM ingest_jobs j
    WHERE j.created_at < now() - make_interval(secs => %(older_than_s)s)
      AND NOT EXISTS (SELECT FROM ingest_tasks t WHERE t.job_id = j.id AND t.state <> 'done')
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
"""


def prune_jobs(conn: Connection, *, older_than_days: float, batch: int = BATCH) -> int:
    """Delete every ended ingest job created more than `older_than_days` ago, with its
    tasks and item rows; returns how many jobs. `conn` is autocommit: each batch commits."""
    if older_than_days < 0:
        raise BadRequest(f"older than {older_than_days} days: give a number of days ≥ 0")
    params = {"older_than_s": older_than_days * 86400.0, "batch": batch}
    pruned = 0
    while True:
        deleted = conn.execute(_PRUNE, params).rowcount
        pruned += deleted
        if deleted < batch:
            return pruned


class PeriodicPrune:
    """`prune_jobs` at most once every `every_s`, the first time on the first call: called
    on each pass of a worker's reconciler (mmq/jobs/reconcile.py)."""

    def __init__(
        self,
        *,
        older_than_days: float,
        every_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.older_than_days = older_than_days
        self.every_s = every_s
        self._clock = clock
        self._next = clock()

    def __call__(self, conn: Connection) -> int | None:
        """Jobs pruned, or None when not due yet."""
        now = self._clock()
        if now < self._next:
            return None
        # Due again a period from now even if this pass fails: a failing prune is logged
        # once a period, not on every reconciler pass.
        self._next = now + self.every_s
        pruned = prune_jobs(conn, older_than_days=self.older_than_days)
        if pruned:
            log.info(
                "pruned %d ingest job(s) that ended over %g days ago", pruned, self.older_than_days
            )
        return pruned
