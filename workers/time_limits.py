"""Time limits for the threads pool, where Celery enforces none (only prefork does).

A watchdog thread looks at the running tasks every half second. Past the soft limit it
raises SoftTimeLimitExceeded inside the task's thread, as prefork does with a signal: the
exception surfaces at the thread's next Python instruction, so a task inside a long C call
(a forward pass, a frame decode) sees it when that call returns. Past the hard limit the
task cannot be stopped on its own, so the whole process exits: its unacknowledged messages
come back (reconciler, visibility timeout) and its supervisor starts it again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)
EXIT_HARD_TIME_LIMIT = 70


@dataclass
class _Running:
    task_id: str
    started: float
    soft_sent: bool = False


class Watchdog:
    def __init__(
        self,
        *,
        soft_s: float,
        hard_s: float,
        on_hard: Callable[[str], None] | None = None,
        every_s: float = 0.5,
    ) -> None:
        self.soft_s, self.hard_s, self.every_s = soft_s, hard_s, every_s
        self.on_hard = on_hard or _exit
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def started(self, task_id: str) -> None:
        """Called in the task's own thread as it starts."""
        with self._lock:
            self._running[threading.get_ident()] = _Running(task_id, time.monotonic())

    def finished(self) -> None:
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="mmq-time-limits", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            now = time.monotonic()
            hard = None
            with self._lock:  # held while raising: the task cannot finish meanwhile
                for thread_id, task in self._running.items():
                    elapsed = now - task.started
                    if elapsed > self.hard_s:
                        hard = task
                    elif elapsed > self.soft_s and not task.soft_sent:
                        task.soft_sent = True
                        log.warning("task %s past the soft time limit", task.task_id)
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(thread_id), ctypes.py_object(SoftTimeLimitExceeded)
                        )
            if hard is not None:
                log.critical("task %s past the hard time limit: exiting", hard.task_id)
                self.on_hard(hard.task_id)


def _exit(task_id: str) -> None:
    logging.shutdown()
    os._exit(EXIT_HARD_TIME_LIMIT)
