"""The threads pool's time limits (workers/time_limits.py): past the soft limit the task's
thread gets SoftTimeLimitExceeded; past the hard limit the process is ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded

from workers.time_limits import Watchdog


def run_task(
    watchdog: Watchdog, body: Callable[[], object], outcome: list[str]
) -> threading.Thread:
    def task() -> None:
        watchdog.started("t1")
        try:
            body()
            outcome.append("finished")
        except SoftTimeLimitExceeded:
            outcome.append("soft limit")
        finally:
            watchdog.finished()

    thread = threading.Thread(target=task)
    thread.start()
    return thread


def test_python_code_past_the_soft_limit_is_interrupted() -> None:
    hard: list[str] = []
    watchdog = Watchdog(soft_s=0.3, hard_s=30, on_hard=hard.append, every_s=0.05)
    watchdog.start()
    outcome: list[str] = []

    def busy() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sum(range(1000))

    started = time.monotonic()
    run_task(watchdog, busy, outcome).join(15)
    watchdog.stop()
    assert outcome == ["soft limit"] and time.monotonic() - started < 2 and hard == []


def test_a_task_stuck_in_c_past_the_hard_limit_ends_the_process() -> None:
    hard: list[str] = []
    watchdog = Watchdog(soft_s=0.2, hard_s=0.6, on_hard=hard.append, every_s=0.05)
    watchdog.start()
    outcome: list[str] = []
    run_task(watchdog, lambda: time.sleep(1.5), outcome).join(5)
    watchdog.stop()
    assert hard and hard[0] == "t1"  # the real on_hard exits the process
    assert outcome == ["soft limit"]  # delivered once the C call returned


def test_a_task_within_its_limits_is_left_alone() -> None:
    hard: list[str] = []
    watchdog = Watchdog(soft_s=1, hard_s=2, on_hard=hard.append, every_s=0.05)
    watchdog.start()
    outcome: list[str] = []
    run_task(watchdog, lambda: time.sleep(0.2), outcome).join(5)
    time.sleep(1.2)  # past the limits after it finished: nothing happens
    watchdog.stop()
    assert outcome == ["finished"] and hard == []


def test_an_ingest_attempt_out_of_time_is_retried_without_limit() -> None:
    # Each retry takes the pending items one at a time, and max_item_attempts quarantines an
    # item that never fits: the number of retries must not end the task first (Celery's
    # default is 3; `self.retry(max_retries=None)` would mean that default, not no limit).
    from workers.tasks import ingest

    assert ingest.max_retries is None
