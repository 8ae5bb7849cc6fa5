"""The one Celery app of the workers. `celery -A workers.app worker` or `mmq worker`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready

from mmq.broker import celery_config
from mmq.config import get_settings
from mmq.embedded import resolve_urls


def _config() -> dict[str, Any]:
    # Evaluated when the app is configured (worker start), not at import: resolving the URLs
    # may start embedded servers, which importing a module must never do.
    settings = get_settings()
    return celery_config(resolve_urls(settings), result_expires_s=settings.result_expires_s)


app = Celery("mmq", include=["workers.tasks"])
app.add_defaults(_config)


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # Each pool process loads its own model and engine, after fork, before its first task.
    from workers.runtime import get_runtime

    get_runtime()


@worker_ready.connect
def _load_model_in_threads_pool(**_: Any) -> None:
    # The threads pool runs tasks in this process, which forks no pool processes. Loaded
    # once logging is set up; a task that arrives first waits for the same load.
    if get_settings().worker_pool == "threads":
        from workers.runtime import get_runtime

        get_runtime()
