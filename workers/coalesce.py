"""Concurrent task threads' work run as one call: the threads pool's own message batching.

The first thread to arrive leads: it waits up to `max_wait_s` for others to join (up to
`max_keys` of them), runs them all with one call, and hands each thread its own value.
Threads that arrive meanwhile wait for a leader's call; those left over when a leader
takes its keys have one of them lead the next call, while the first runs.

Each thread's message is still acknowledged by Celery after its own task returns, that
is, after the call that stored its rows has committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(eq=False)
class _Entry:
    key: Any
    value: Any = None
    done: bool = False
    leads: bool = False


class Coalescer(Generic[K, V]):
    def __init__(
        self,
        run: Callable[[Sequence[K]], dict[K, V]],
        *,
        max_keys: int,
        max_wait_s: float,
        fallback: V,
    ) -> None:
        """`run` gets the keys of a call and returns each one's value. `fallback`: the value
        of each key whose call ended without one (it raised, for its leader's thread)."""
        self._run, self.max_keys, self.max_wait_s = run, max_keys, max_wait_s
        self._fallback = fallback
        self._cond = threading.Condition()
        self._waiting: list[_Entry] = []
        self._gathering = False  # a leader is waiting for company
        self.calls = self.keys = 0  # their ratio: the mean keys per call

    def submit(self, key: K) -> V:
        entry = _Entry(key)
        with self._cond:
            self._waiting.append(entry)
            self._cond.notify_all()
            if self._gathering:
                try:
                    self._cond.wait_for(lambda: entry.done or entry.leads)
                except BaseException:  # a time limit, raised while this thread waits
                    self._leave(entry)
                    raise
                if entry.done:
                    return entry.value
            self._gathering = entry.leads = True
            deadline = time.monotonic() + self.max_wait_s
            try:
                while len(self._waiting) < self.max_keys and time.monotonic() < deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
            except BaseException:
                self._leave(entry)
                raise
            batch = self._waiting[: self.max_keys]
            del self._waiting[: self.max_keys]
            self._promote()
            self.calls, self.keys = self.calls + 1, self.keys + len(batch)
        values: dict[K, V] = {}
        try:
            values = self._run([e.key for e in batch])
        finally:
            with self._cond:
                for e in batch:
                    e.value, e.done = values.get(e.key, self._fallback), True
                self._cond.notify_all()
        return values.get(key, self._fallback)

    def _promote(self) -> None:
        """The first thread still waiting leads the next call (the lock is held)."""
        self._gathering = bool(self._waiting)
        if self._waiting:
            self._waiting[0].leads = True
            self._cond.notify_all()

    def _leave(self, entry: _Entry) -> None:
        """A waiting thread gives up (the lock is held); if it was to lead, another does."""
        if entry in self._waiting:
            self._waiting.remove(entry)
        if entry.leads and not entry.done:
            self._promote()
