"""The one Celery app of the workers. `celery -A workers.app worker` or `mmq worker`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from mmq.broker import INGEST_TASK, celery_config
from mmq.config import get_settings
from mmq.embedded import resolve_urls


def _config() -> dict[str, Any]:
    # Evaluated when the app is configured (worker start), not at import: resolving the URLs
    # may start embedded servers, which importing a module must never do.
    settings = get_settings()
    return celery_config(resolve_urls(settings), settings)


app = Celery("mmq", include=["workers.tasks"])
app.add_defaults(_config)


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # Each pool process loads its own model and engine, after fork, before its first task.
    from workers.runtime import get_runtime

    get_runtime()


@after_setup_logger.connect
def _quiet_task_lines(loglevel: int | str = logging.INFO, **_: Any) -> None:
    # At INFO Celery logs two lines per task (received, succeeded): hundreds a second under
    # one-item messages, saying what the job records say. Failures and warnings still log;
    # --loglevel DEBUG brings the lines back.
    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if level > logging.DEBUG:
        for name in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)


# The threads pool's time limits (Celery enforces them in prefork only).
_watchdog: Any = None


@worker_ready.connect
def _start_threads_pool(**_: Any) -> None:
    # The threads pool runs tasks in this process, which forks no pool processes: its time
    # limits are watched here, and its model loaded once logging is set up (a task that
    # arrives first waits for the same load).
    global _watchdog
    settings = get_settings()
    if settings.worker_pool == "threads":
        from workers.runtime import get_runtime
        from workers.time_limits import Watchdog

        _watchdog = Watchdog(
            soft_s=settings.task_soft_time_limit_s, hard_s=settings.task_time_limit_s
        )
        _watchdog.start()
        get_runtime()


@task_prerun.connect
def _task_started(task_id: str, **_: Any) -> None:
    if _watchdog is not None:
        _watchdog.started(task_id)


@task_postrun.connect
def _task_finished(**_: Any) -> None:
    if _watchdog is not None:
        _watchdog.finished()


_stop_reconciler = threading.Event()


@worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    # In the main process of every worker: a message lost by the broker or held by a dead
    # worker is sent again (mmq/jobs/reconcile.py). Two workers doing it send a harmless copy.
    # Its thread also prunes the rows of jobs that ended long ago (mmq/jobs/retention.py).
    from mmq.jobs.reconcile import reconcile_forever
    from mmq.jobs.retention import PeriodicPrune

    settings = get_settings()
    prune = PeriodicPrune(
        older_than_days=settings.job_retention_days, every_s=settings.job_prune_every_s
    )

    def send(task_id: str, queue: str) -> None:
        app.send_task(INGEST_TASK, args=[{"task_id": task_id}], queue=queue, task_id=task_id)

    threading.Thread(
        target=reconcile_forever,
        args=(resolve_urls(settings).database_url, send),
        kwargs=dict(
            after_s=settings.reconcile_after_s,
            every_s=settings.reconcile_every_s,
            stop=_stop_reconciler,
            also=[prune],
        ),
        name="mmq-reconciler",
        daemon=True,
    ).start()


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    _stop_reconciler.set()
    if _watchdog is not None:
        _watchdog.stop()
