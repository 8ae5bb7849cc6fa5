"""What a Celery result per ingest message costs: one item per message, alternating runs
with the messages as `Client.ingest` sends them (`ignore_result`) and with a result stored
for each in the result backend, as before.

    python -m benchmarks.result_backend_cost [--images 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks import bench_ingest
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from tests.support.data import photo_items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    settings = get_settings()
    client = Client(settings, ready_servers(settings))
    items, source = photo_items(args.images, settings.state_dir / "bench")
    roots = sorted({Path(it.image_path).parent for it in items if it.image_path})
    send = client.app.send_task

    def storing_results(*a: Any, **kw: Any) -> Any:
        return send(*a, **(kw | {"ignore_result": False}))

    runs: dict[str, list[bench_ingest.Throughput]] = {"ignore_result": [], "results": []}
    logs = settings.state_dir / "logs"
    with running_workers(client.app, queues=("ingest",), log_dir=logs, roots=roots):
        bench_ingest.through_queue(client, items[:64], chunk_size=1)  # warm-up
        for r in range(args.rounds):
            for name in sorted(runs, reverse=r % 2 == 1):  # alternate which goes first
                storing = mock.patch.object(client.app, "send_task", storing_results)
                with storing if name == "results" else contextlib.nullcontext():
                    t = bench_ingest.through_queue(client, items, chunk_size=1)
                runs[name].append(t)
                print(f"round {r + 1}, {name}: {t.images_per_s:.1f} images/s,"
                      f" {t.cpu_ms_per_image:.1f} CPU ms per image", flush=True)  # fmt: skip
    print(f"{source}, one per message; medians:")
    for name, done in runs.items():
        rate = statistics.median(t.images_per_s for t in done)
        cpu = statistics.median(t.cpu_ms_per_image for t in done)
        print(f"  {name:14s} {rate:6.1f} images/s, {cpu:5.1f} CPU ms per image")
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
