"""celery-batches against the production worker's own coalescing, one item per message.

    PYTHONPATH=.:/tmp/cb-site python -m benchmarks.celery_batches_eval [--images 500]
        [--rounds 3] [--production THREADS:COALESCE[:MS],...] [--batches B:T_ms,...]
    PYTHONPATH=.:/tmp/cb-site python -m benchmarks.celery_batches_eval --check

celery-batches wants celery < 5.7: `pip install --target /tmp/cb-site celery-batches` and
put that target on PYTHONPATH (both workers then run its celery), never install it into the
project's environment. Without it this script says so and exits 0.

The same photos go through `mmq.Client.ingest(..., chunk_size=1)` to the production worker
(`mmq worker`, threads pool) with coalescing off, as shipped, and with more threads and
larger coalesced calls; and to benchmarks/celery_batches_worker.py (B messages or what came
in T ms as one call of the same service). Each worker runs alone on the ingest queue, in
rounds that alternate them (the machine is noisy); a reference row sends the shipped worker
16 items per message. Prints images/s and the whole machine's CPU ms per image.

--check: the batches worker holds its function a few seconds after the commit; the broker
still holds the flush's messages unacknowledged then, and acknowledges them once it returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import celery
import redis

from benchmarks import bench_ingest
from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.cli.spawn import ready_servers, running_workers, stop_workers, wait_for_workers
from mmq.client import Client
from mmq.config import Settings, get_settings
from mmq.schemas import IngestItem
from tests.support.data import photo_items

MISSING = (
    "celery_batches is not importable: skipping the celery-batches eval. pip install"
    " celery-batches into a separate target (it needs celery<5.7), e.g. `pip install --target"
    " /tmp/cb-site celery-batches`, and run with PYTHONPATH=.:/tmp/cb-site"
)
KNOBS = ("MMQ_WORKER_THREADS", "MMQ_INGEST_COALESCE", "MMQ_INGEST_COALESCE_MS")
HOLD_S = 3.0


class Setup(NamedTuple):
    name: str
    env: dict[str, str]  # on top of the shipped defaults
    batches: tuple[int, float] | None = None  # celery-batches' (B, T ms); None: `mmq worker`
    reference_chunk: int = 0  # also a row with this many items per message


def setups(production: list[str], batches: list[str]) -> list[Setup]:
    d = Settings.model_fields
    threads, coalesce, ms = (d[k].default for k in ("worker_threads", "ingest_coalesce",
                                                    "ingest_coalesce_ms"))  # fmt: skip
    out = [
        Setup(f"production, {threads} threads, coalescing off", {"MMQ_INGEST_COALESCE": "1"}),
        Setup(f"production as shipped: {threads} threads, coalesce {coalesce} / {ms:.0f} ms",
              {}, reference_chunk=d["ingest_chunk_size"].default),
    ]  # fmt: skip
    for spec in production:
        t, c, *wait = spec.split(":")
        env = {"MMQ_WORKER_THREADS": t, "MMQ_INGEST_COALESCE": c}
        env |= {"MMQ_INGEST_COALESCE_MS": wait[0]} if wait else {}
        name = f"production, {t} threads, coalesce {c} / {float(wait[0]) if wait else ms:.0f} ms"
        out.append(Setup(name, env))
    for spec in batches:
        b, t = spec.split(":")
        out.append(Setup(f"celery-batches B={b} T={t} ms, {threads} threads", {},
                         (int(b), float(t))))  # fmt: skip
    return out


def rows(setup: Setup) -> list[tuple[str, int]]:
    """The rows a setup's worker measures: (name, items per message)."""
    chunk = setup.reference_chunk
    reference = [(f"  reference: as shipped, {chunk} items per message", chunk)]
    return [(setup.name, 1), *(reference if chunk else [])]


@contextmanager
def worker(client: Client, setup: Setup, roots: list[Path], hold_s: float = 0) -> Iterator[None]:
    """The setup's worker alone on the ingest queue."""
    logs = get_settings().state_dir / "logs"
    env = {k: v for k, v in os.environ.items() if k not in KNOBS} | setup.env
    if setup.batches is None:
        with running_workers(
            client.app, queues=(INGEST_QUEUE,), log_dir=logs, env=env, roots=roots
        ):
            yield
        return
    threads = str(Settings.model_fields["worker_threads"].default)
    env |= {
        "MMQ_WORKER_POOL": "threads",
        "MMQ_INGEST_COALESCE": "1",  # the worker's Coalescer would be unused
        "MMQ_INGEST_ROOTS": os.pathsep.join(str(r.resolve()) for r in roots),
        "MMQ_CB_FLUSH_EVERY": str(setup.batches[0]),
        "MMQ_CB_FLUSH_MS": str(setup.batches[1]),
        "MMQ_CB_HOLD_AFTER_COMMIT_S": str(hold_s),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "benchmarks.celery_batches_worker", "worker",
        "--pool", "threads", "--concurrency", threads, "--queues", INGEST_QUEUE,
        "--hostname", f"mmq-batches-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "worker-batches.log", "ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_for_workers(client.app, 1, [proc], timeout=120)
        yield
    finally:
        stop_workers([proc])


def measure(client: Client, items: list[IngestItem], chunk: int) -> bench_ingest.Throughput:
    bench_ingest.through_queue(client, items[:64], chunk_size=1)  # warm-up: model, pools
    return bench_ingest.through_queue(client, items, chunk_size=chunk)


def compare(client: Client, items: list[IngestItem], rounds: int, all_: list[Setup]) -> None:
    roots = sorted({Path(it.image_path).parent for it in items if it.image_path})
    runs: dict[str, list[bench_ingest.Throughput]] = {}
    for r in range(rounds):
        for setup in all_[r % len(all_) :] + all_[: r % len(all_)]:  # each round starts later
            with worker(client, setup, roots):
                for name, chunk in rows(setup):
                    t = measure(client, items, chunk)
                    runs.setdefault(name, []).append(t)
                    print(f"round {r + 1}: {name}: {t.images_per_s:.1f} images/s,"
                          f" {t.cpu_ms_per_image:.1f} CPU ms per image", flush=True)  # fmt: skip
    order = [name for s in all_ for name, _ in rows(s)]
    print(f"\n{len(items)} photos, one per message; each round: images/s / machine CPU ms per"
          " image")  # fmt: skip
    width = max(map(len, order))
    header = "  ".join(f"{f'round {i + 1}':>14s}" for i in range(rounds))
    print(f"{'worker':{width}s}  {header}  {'median img/s':>12s}  {'median CPU ms':>13s}")
    for name in order:
        done = runs[name]
        cells = "  ".join(f"{t.images_per_s:6.1f} / {t.cpu_ms_per_image:5.1f}" for t in done)
        rate = statistics.median(t.images_per_s for t in done)
        cpu = statistics.median(t.cpu_ms_per_image for t in done)
        print(f"{name:{width}s}  {cells}  {rate:12.1f}  {cpu:13.1f}")


def check(client: Client, items: list[IngestItem], broker_url: str) -> int:
    """One flush of 9 messages (a job of 8 photos, an unknown task id), held HOLD_S after
    its commit: committed, yet unacknowledged; acknowledged once the function returned."""
    roots = sorted({Path(it.image_path).parent for it in items[:8] if it.image_path})
    broker = redis.Redis.from_url(broker_url)
    setup = Setup("check", {}, (9, 10_000))  # flushes when the 9 are in
    with worker(client, setup, roots, hold_s=HOLD_S):
        unknown = f"unknown-{uuid.uuid4()}"
        client.app.send_task(INGEST_TASK, args=[{"task_id": unknown}], task_id=unknown)
        job = client.ingest(items[:8], collection="check-acks", chunk_size=1)
        while job.status().state != "done":
            time.sleep(0.02)
        committed, unacked = time.monotonic(), broker.hlen("unacked")  # kombu: not acked yet
        while broker.hlen("unacked") and time.monotonic() < committed + 30:
            time.sleep(0.02)
        acked_after = time.monotonic() - committed
        assert client.tables is not None
        with client.tables.conn() as conn:
            rows = conn.execute("SELECT id FROM ingest_tasks WHERE job_id = %s", (job.id,))
            states = sorted({str(_state(client, row[0])["status"]) for row in rows})
        failed = _state(client, unknown)
    ok = (
        unacked == 9 and acked_after >= 0.8 * HOLD_S and states == ["SUCCESS"]
        and failed["status"] == "FAILURE" and "no ingest task" in str(failed["result"])
    )  # fmt: skip
    print(
        f"acks: the job's 8 tasks committed in PostgreSQL with {unacked} of the flush's 9"
        f" messages unacknowledged in Redis; all acknowledged {acked_after:.2f} s later (the"
        f" function holds {HOLD_S:.0f} s after its commit). Celery results: the job's tasks"
        f" {states}, the unknown id {failed['status']} {failed['result']!r}:"
        f" {'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


def _state(client: Client, task_id: str) -> dict[str, object]:
    return dict(client.app.backend.get_task_meta(task_id))


def _list(specs: str) -> list[str]:
    return [s for s in specs.split(",") if s]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--production", default="16:8,32:16", help="THREADS:COALESCE[:MS],...")
    parser.add_argument("--batches", default="64:250", help="B:T_ms,...")
    parser.add_argument("--check", action="store_true", help="acks after the commit only")
    args = parser.parse_args()
    if importlib.util.find_spec("celery_batches") is None:
        print(MISSING)
        return 0
    settings = get_settings()
    urls = ready_servers(settings)
    items, source = photo_items(args.images, settings.state_dir / "bench")
    client = Client(settings, urls)
    try:
        if args.check:
            return check(client, items, urls.broker_url)
        print(f"photos: {source}; celery {celery.__version__} in every worker", flush=True)
        all_ = setups(_list(args.production), _list(args.batches))
        compare(client, items, args.rounds, all_)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
