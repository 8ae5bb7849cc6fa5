"""What `mmq status` shows without a job id: the ingest work PostgreSQL knows of. Plain
psycopg, as the other job records (mmq/jobs/records.py); the queues and the workers come
from the broker (`Client.overview`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from psycopg import Connection

# A job's state from its tasks, as records.job_status says it for one job.
_JOBS_BY_STATE = """
SELECT state, count(*) FROM (
    SELECT CASE WHEN bool_and(state = 'done') THEN 'done'
                WHEN bool_or(state <> 'queued' OR attempts > 0) THEN 'running'
                ELSE 'queued' END AS state
    FROM ingest_tasks GROUP BY job_id
) jobs GROUP BY state
"""


def jobs_by_state(conn: Connection) -> dict[str, int]:
    """Ingest jobs (reindexes' included) by state: queued, running, done."""
    found = {"queued": 0, "running": 0, "done": 0}
    found |= {state: int(n) for state, n in conn.execute(_JOBS_BY_STATE).fetchall()}
    return found


def oldest_unfinished_s(conn: Connection) -> float | None:
    """Seconds since the oldest unfinished ingest task was first sent (None: none is)."""
    row = conn.execute(
        "SELECT extract(epoch FROM now() - min(j.created_at)) FROM ingest_tasks t"
        " JOIN ingest_jobs j ON j.id = t.job_id WHERE t.state <> 'done'"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


@dataclass(frozen=True)
class QueueState:
    depth: int  # messages waiting (not those a worker holds)
    workers: list[str]  # consumers that answered


@dataclass(frozen=True)
class Overview:
    """The whole system at a glance (`Client.overview()`, `mmq status` without an id)."""

    queues: dict[str, QueueState]
    jobs: dict[str, int]  # ingest jobs by state
    oldest_unfinished_s: float | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
