"""What the Client sent through the result backend, recorded there: a search or a
recommendation has no row in PostgreSQL, and Celery answers PENDING ("queued") for an id
it never saw, so this record is what tells a job that exists from an unknown id.

One key per job, `mmq:job:<id>` → `{"kind": ..., "collection": ...}`, expiring with the
job's result (`MMQ_RESULT_EXPIRES_S`): past it, the job is unknown again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

KEY = "mmq:job:{}"


@dataclass(frozen=True)
class SentJob:
    id: str
    kind: str  # the Client's name for it: "search", "recommend", ...
    collection: str


def remember(r: redis.Redis, job: SentJob, *, ttl_s: int) -> None:
    """Record a job about to be sent; recorded first, so a job is never seen unrecorded."""
    value = json.dumps({"kind": job.kind, "collection": job.collection})
    r.set(KEY.format(job.id), value, ex=ttl_s)


def recall(r: redis.Redis, job_id: str) -> SentJob | None:
    """The job sent under `job_id`, or None: never sent by a Client, or expired."""
    raw = r.get(KEY.format(job_id))
    if raw is None:
        return None
    fields = json.loads(raw)
    return SentJob(id=job_id, kind=str(fields["kind"]), collection=str(fields["collection"]))
