"""The Celery app configuration shared by producers and workers (no tasks, no torch)."""

from __future__ import annotations

from typing import Any

from celery import Celery

from mmq.config import Settings
from mmq.embedded import Urls

# Task and queue names are the contract between producers and workers.
INGEST_TASK = "mmq.ingest"
SEARCH_TASK = "mmq.search"
# Recommendations from a user's events: a search without a query, on the search queue.
RECOMMEND_TASK = "mmq.recommend"
# Deleting items or a whole collection: database work, on the ingest queue.
DELETE_TASK = "mmq.delete"
# The end of a reindex: waits for its chunks, then switches the collection to the model.
REINDEX_FINISH_TASK = "mmq.reindex_finish"
# A no-op that answers on whichever queue it is sent to: health checks, queue overhead.
PING_TASK = "mmq.ping"
INGEST_QUEUE = "ingest"
SEARCH_QUEUE = "search"


def model_queue(queue: str, model: str) -> str:
    """The queue of `queue`'s work that only a worker serving `model` can do: a reindex's
    chunks, a search of a collection bound to a model other than the worker's. A worker
    consuming `queue` consumes its own model's too (mmq/cli/worker.py)."""
    return f"{queue}.{model}"


def make_celery(urls: Urls, settings: Settings) -> Celery:
    app = Celery("mmq")
    app.conf.update(celery_config(urls, settings))
    return app


def celery_config(urls: Urls, settings: Settings) -> dict[str, Any]:
    return dict(
        broker_url=urls.broker_url,
        result_backend=urls.result_backend,
        # JSON only: a pickle message from the broker is refused, never executed.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_routes={
            INGEST_TASK: {"queue": INGEST_QUEUE},
            SEARCH_TASK: {"queue": SEARCH_QUEUE},
            RECOMMEND_TASK: {"queue": SEARCH_QUEUE},
            DELETE_TASK: {"queue": INGEST_QUEUE},
        },
        task_default_queue=INGEST_QUEUE,
        # "running" is visible to producers, not only queued/done.
        task_track_started=True,
        result_expires=settings.result_expires_s,
        # A message is acknowledged only after its task finished, so a worker that dies
        # mid-task leaves it to be redelivered (ingest is idempotent).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # Every task is time-limited, and Redis redelivers an unacknowledged message only
        # once the longest task has surely ended (Settings checks the order of the three).
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        # A result write during a broker restart is retried, not lost with the task.
        result_backend_always_retry=True,
        result_backend_max_retries=20,
        worker_max_memory_per_child=settings.max_worker_memory_mb * 1024,
        # A new pool process loads its model before it reports up; Celery's default 4 s
        # is too short on a busy CPU, and a process killed for it is replaced in a loop.
        worker_proc_alive_timeout=settings.model_load_timeout_s,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )


def consumers(app: Celery, queue: str, *, timeout: float = 1.0) -> list[str]:
    """The names of the workers consuming `queue` now: those that answer a broadcast within
    `timeout` seconds (a worker busy with tasks still answers; one still loading its model
    does not yet)."""
    return queue_consumers(app, timeout=timeout).get(queue, [])


def queue_consumers(app: Celery, *, timeout: float = 1.0) -> dict[str, list[str]]:
    """Every queue with a consumer, and the names of its workers, from one broadcast (a
    broadcast waits its whole `timeout` for replies)."""
    # A connection of its own, closed after: a pooled one can keep the previous broadcast's
    # pending read of the reply queue, which then swallows this one's replies (every other
    # inspect through one app came back empty: /healthz saw no search worker).
    with app.connection_for_read() as connection:
        inspect = app.control.inspect(timeout=timeout, connection=connection)
        replies = inspect.active_queues() or {}
    found: dict[str, list[str]] = {}
    for name, queues in sorted(replies.items()):
        for q in queues:
            found.setdefault(q["name"], []).append(name)
    return found
