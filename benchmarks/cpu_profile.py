"""Where an ingest's CPU goes: per process (worker, PostgreSQL, Redis, producer) from /proc,
and inside the worker by stage, from py-spy samples of its running threads.

Used by benchmarks/bench.py (`make bench`) and benchmarks/overhead_ab.py. Every figure is
CPU milliseconds per image. py-spy samples without stopping the worker (`--nonblocking`)
and counts the threads that run (not those waiting on a lock, a socket or the database).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_ingest import machine_busy_s, through_queue
from mmq.client import Client
from mmq.schemas import IngestItem

# py-spy's own CPU grows with its rate; the profiled run is apart from the measured ones.
SAMPLES_PER_S = 100
# Installed beside this Python (the dev extra), or on the PATH.
_BESIDE = Path(sys.executable).with_name("py-spy")
PY_SPY = str(_BESIDE) if _BESIDE.is_file() else shutil.which("py-spy")

# py-spy counts a thread blocked in some calls as running: a sample whose innermost frame
# is one of these waits is not CPU time.
WAITS = (
    "Condition.wait (",
    "Connection.wait (psycopg/",
    "_epoll.poll (",
    "_read_from_socket (",
    "_worker (concurrent/futures/thread.py",
    "Event.wait (",
    "sleep (",
)

# A sample's stage is that of its innermost frame that names one: (stage, what the frame's
# text holds). Frames read "function (file:line)".
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("forward pass", ("encode_prepared (", "encode_texts (", "mmq/encoders/batching.py")),
    ("decode and prepare", ("decode_item (", "prepare_images (", "submit_images (")),
    (
        "lock and claim",
        ("locked_tasks (", "try_lock_many (", "claim_fresh (", "claim_task (", "count_attempt ("),
    ),
    (
        "collection and upsert",
        ("upsert_items (", "lock_for_upsert (", "drop_segments (", "_collection (")
        + ("_item_rows (", "collection_space ("),
    ),
    (
        "commit and job records",
        ("record_ends (", "finish_tasks (", "task_results (", "commit (", "_recorder ("),
    ),
    ("result", ("model_dump (", "store_result (", "mark_as_done (", "celery/backends/")),
    ("receive and ack", ("celery/", "kombu/", "billiard/", "redis/", "amqp/", "vine/")),
)
OTHER = "other Python"


def stage_of(stack: Sequence[str]) -> str:
    """The stage of one sample, its frames outermost first."""
    for frame in reversed(stack):
        for stage, marks in STAGES:
            if any(mark in frame for mark in marks):
                return stage
    return OTHER


@dataclass
class Profile:
    """CPU milliseconds per image: by process group, and by stage inside the worker."""

    processes: dict[str, float] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, dict[str, float]]:
        return {"processes": self.processes, "worker_stages": self.stages}


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, all its threads, in seconds (0 if it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def group_cpu_s(workers: Sequence[int]) -> dict[str, float]:
    """CPU seconds so far of the worker processes, PostgreSQL's, Redis's (or Valkey's), and
    this process (the producer). Processes that exit take their time along: see `other`."""
    totals: dict[str, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        comm = _comm(pid)
        if pid in workers:
            group = "worker"
        elif comm in ("postgres", "postmaster"):
            group = "postgresql"
        elif comm.startswith(("redis-server", "valkey-server")):
            group = "redis"
        elif comm == "py-spy":
            group = "profiler"
        elif pid == os.getpid():
            group = "producer"
        else:
            continue
        totals[group] = totals.get(group, 0.0) + process_cpu_s(pid)
    return totals


@contextmanager
def profiled(workers: Sequence[int], images: int, out: Profile) -> Iterator[None]:
    """Fill `out` with the block's CPU per image of `images`: by process group (whatever is
    left of the machine's busy time is `other`), and by stage in the first worker when
    py-spy is installed."""
    sampler = _Sampler(workers[0], PY_SPY) if PY_SPY else None
    before, busy0 = group_cpu_s(workers), machine_busy_s()
    if sampler:
        sampler.start()
    try:
        yield
    finally:
        after, busy = group_cpu_s(workers), machine_busy_s() - busy0
        samples = sampler.stop() if sampler else Counter()
    spent = {g: after.get(g, 0.0) - before.get(g, 0.0) for g in after}
    spent["other"] = max(0.0, busy - sum(spent.values()))
    out.processes = {g: 1000 * s / images for g, s in sorted(spent.items())}
    total = sum(samples.values())
    if total:
        # Samples are shares of the worker's measured CPU time.
        worker_ms = out.processes.get("worker", 0.0)
        out.stages = {s: worker_ms * n / total for s, n in samples.most_common()}


def profile_ingest(
    client: Client, items: list[IngestItem], *, chunk_size: int, workers: Sequence[int]
) -> dict[str, dict[str, float]]:
    """One more ingest of `items`, profiled (py-spy costs CPU of its own: the measured runs
    are apart)."""
    out = Profile()
    with profiled(workers, len(items), out):
        through_queue(client, items, chunk_size=chunk_size)
    return out.as_json()


class _Sampler:
    """py-spy recording one process until stopped; its samples counted by stage."""

    def __init__(self, pid: int, py_spy: str) -> None:
        self.pid, self.py_spy = pid, py_spy
        self.dir = Path(tempfile.mkdtemp(prefix="mmq-profile-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.py_spy, "record", "--pid", str(self.pid), "--rate", str(SAMPLES_PER_S),
                "--nonblocking", "--format", "raw", "--output", str(self.dir / "raw.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached before the work starts

    def stop(self) -> Counter[str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        self.proc.wait(timeout=60)
        counts: Counter[str] = Counter()
        raw = self.dir / "raw.txt"
        for line in raw.read_text().splitlines() if raw.is_file() else []:
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            if not frames[-1].startswith(WAITS):
                counts[stage_of(frames)] += int(n)
        if os.environ.get("MMQ_PROFILE_KEEP"):  # the raw samples, for a closer look
            shutil.copy(raw, os.environ["MMQ_PROFILE_KEEP"])
        shutil.rmtree(self.dir, ignore_errors=True)
        return counts
