"""A search of a collection bound to another model than this worker's goes on to a worker
of that model (queue `search.<model>`) when one runs. During a reindex the workers of the
old and the new model share the search queue: each search is answered by the model of its
collection, before the switch and after it. With no such worker, the search fails saying
whose collection it is, as it always did."""

from __future__ import annotations

import threading
import time
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import Ignore

from mmq.broker import SEARCH_QUEUE, consumers, model_queue
from mmq.errors import WrongModel

# Whether a queue has a consumer is asked by a broadcast (about a second): its answer is
# kept this long.
_KEEP_S = 10.0
_served: dict[str, tuple[float, bool]] = {}
_lock = threading.Lock()


def forward_search(task: Task, payload: dict[str, Any], error: WrongModel) -> NoReturn:
    """Send the search on under its own id (its producer waits for that id), or raise."""
    queue = model_queue(SEARCH_QUEUE, error.model)
    came_from = (task.request.delivery_info or {}).get("routing_key")
    if not error.model or came_from == queue or not _has_consumer(task, queue):
        raise error
    task.app.send_task(task.name, args=[payload], queue=queue, task_id=task.request.id)
    raise Ignore()


def _has_consumer(task: Task, queue: str) -> bool:
    now = time.monotonic()
    with _lock:
        known = _served.get(queue)
    if known is not None and now - known[0] < _KEEP_S:
        return known[1]
    found = bool(consumers(task.app, queue, timeout=1.0))
    with _lock:
        _served[queue] = (now, found)
    return found
