"""Queue overhead: a no-op Celery task's round trip against a bare redis-py LPUSH/BRPOP one.

Used by benchmarks/bench.py (`make bench`).
"""

from __future__ import annotations

import threading
import time

import redis

from mmq.broker import PING_TASK, SEARCH_QUEUE
from mmq.client import Client


def celery_round_trips(client: Client, n: int) -> float:
    """Round trips per second: send a no-op task, wait for its result, one at a time."""
    for _ in range(5):  # warm-up: connections, the worker's first task
        client.app.send_task(PING_TASK, queue=SEARCH_QUEUE).get(timeout=30)
    t0 = time.perf_counter()
    for _ in range(n):
        client.app.send_task(PING_TASK, queue=SEARCH_QUEUE).get(timeout=30)
    return n / (time.perf_counter() - t0)


def redis_round_trips(url: str, n: int) -> float:
    """The floor: a thread BRPOPs a request list and LPUSHes each reply, the producer LPUSHes
    a request and BRPOPs its reply, one at a time, on the same server."""
    requests, replies = "mmq-bench:requests", "mmq-bench:replies"
    stop = "stop"

    def serve() -> None:
        r = redis.Redis.from_url(url)
        while True:
            _, body = r.brpop([requests])  # type: ignore[misc]
            if body == stop.encode():
                return
            r.lpush(replies, body)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    r = redis.Redis.from_url(url)
    r.delete(requests, replies)
    t0 = time.perf_counter()
    for i in range(n):
        r.lpush(requests, str(i))
        r.brpop([replies], timeout=30)
    rate = n / (time.perf_counter() - t0)
    r.lpush(requests, stop)
    server.join(timeout=5)
    return rate
