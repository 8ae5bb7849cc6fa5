"""workers.coalesce: concurrent threads' keys run as one call, each thread gets its value."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers.coalesce import Coalescer


class Recorder:
    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay_s, self.fail_on = delay_s, fail_on
        self._lock = threading.Lock()

    def __call__(self, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            self.calls.append(list(keys))
        time.sleep(self.delay_s)
        if self.fail_on in keys:
            raise RuntimeError("the call failed")
        return {k: k.upper() for k in keys}


def submit_all(coalescer: Coalescer[str, str], keys: list[str]) -> list[str | BaseException]:
    def one(key: str) -> str | BaseException:
        try:
            return coalescer.submit(key)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(one, keys))


def test_threads_arriving_together_share_one_call_and_get_their_own_values() -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_keys=8, max_wait_s=0.5, fallback="alone")
    keys = [f"k{i}" for i in range(8)]
    assert submit_all(coalescer, keys) == [k.upper() for k in keys]
    assert [sorted(c) for c in run.calls] == [sorted(keys)]  # full: no need to wait longer


def test_a_call_takes_at_most_max_keys_and_the_rest_lead_the_next() -> None:
    run = Recorder(delay_s=0.05)
    coalescer = Coalescer(run, max_keys=3, max_wait_s=0.2, fallback="alone")
    keys = [f"k{i}" for i in range(10)]
    assert submit_all(coalescer, keys) == [k.upper() for k in keys]
    assert all(len(c) <= 3 for c in run.calls)
    assert sorted(k for c in run.calls for k in c) == sorted(keys)
    assert coalescer.calls == len(run.calls) and coalescer.keys == 10


def test_a_lone_thread_waits_at_most_max_wait() -> None:
    coalescer = Coalescer(Recorder(), max_keys=8, max_wait_s=0.05, fallback="alone")
    t0 = time.monotonic()
    assert coalescer.submit("only") == "ONLY"
    assert time.monotonic() - t0 < 0.5


def test_a_failed_call_raises_for_its_leader_and_gives_the_others_the_fallback() -> None:
    run = Recorder(fail_on="k0")
    coalescer = Coalescer(run, max_keys=4, max_wait_s=0.5, fallback="alone")
    out = submit_all(coalescer, ["k0", "k1", "k2", "k3"])
    errors = [o for o in out if isinstance(o, RuntimeError)]
    assert len(errors) == 1  # the leader's own task fails: it ran the call
    assert sorted(o for o in out if isinstance(o, str)) == ["alone"] * 3
    # and the coalescer still works
    assert coalescer.submit("k9") == "K9"


def test_a_waiting_thread_that_is_interrupted_leaves_without_blocking_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_keys=2, max_wait_s=0.3, fallback="alone")
    leader = ThreadPoolExecutor(1).submit(coalescer.submit, "first")
    time.sleep(0.05)  # "first" leads, waiting for company

    class Interrupt(BaseException):  # as a time limit raised inside the wait would be
        pass

    def interrupted_wait(*args: object, **kwargs: object) -> bool:
        raise Interrupt

    with monkeypatch.context() as m:
        m.setattr(coalescer._cond, "wait_for", interrupted_wait)
        with pytest.raises(Interrupt):
            coalescer.submit("second")
    assert leader.result(timeout=2) == "FIRST"
    assert run.calls == [["first"]]  # "second" left before any call took it
    assert coalescer.submit("third") == "THIRD"  # and nobody holds the lead


@pytest.mark.parametrize("max_keys", [1, 2])
def test_max_keys_one_or_two(max_keys: int) -> None:
    run = Recorder()
    coalescer = Coalescer(run, max_keys=max_keys, max_wait_s=0.01, fallback="alone")
    assert submit_all(coalescer, ["a", "b", "c"]) == ["A", "B", "C"]
    assert all(1 <= len(c) <= max_keys for c in run.calls), run.calls
    assert sorted(k for c in run.calls for k in c) == ["a", "b", "c"]  # each key in one call
    assert len(run.calls) >= -(-3 // max_keys)  # 3 calls of one key, or at least 2 of two
    assert (coalescer.calls, coalescer.keys) == (len(run.calls), 3)
