"""Prometheus text for `GET /metrics`: this process's requests and latencies by route and
status, and, read at scrape time, the queues' depths and the ingest work by state.

Counters are per API process (with `--workers N`, a scrape sees the one that answers;
Prometheus sums them when each process is scraped, or run one worker per container)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable

# Seconds; the upper bounds of the latency histogram's buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            counts = self._buckets.setdefault((method, route), [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1  # +Inf
            self._sums[(method, route)] += seconds

    def render(self, queues: dict[str, int], tasks: Iterable[tuple[str, int]]) -> str:
        out = [
            "# HELP mmq_api_requests_total HTTP requests answered, by route and status.",
            "# TYPE mmq_api_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                out.append(
                    f'mmq_api_requests_total{{method="{method}",route="{route}",'
                    f'status="{status}"}} {n}'
                )
            out += [
                "# HELP mmq_api_request_seconds Time to answer, by route.",
                "# TYPE mmq_api_request_seconds histogram",
            ]
            for (method, route), counts in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                for bound, n in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
                    out.append(f'mmq_api_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
                out.append(f"mmq_api_request_seconds_sum{{{labels}}} {self._sums[(method, route)]}")
                out.append(f"mmq_api_request_seconds_count{{{labels}}} {counts[-1]}")
        out += [
            "# HELP mmq_queue_depth Messages waiting in a queue of the broker.",
            "# TYPE mmq_queue_depth gauge",
            *(f'mmq_queue_depth{{queue="{q}"}} {n}' for q, n in sorted(queues.items())),
            "# HELP mmq_ingest_tasks Ingest tasks recorded in PostgreSQL, by state.",
            "# TYPE mmq_ingest_tasks gauge",
            *(f'mmq_ingest_tasks{{state="{s}"}} {n}' for s, n in sorted(tasks)),
        ]
        return "\n".join(out) + "\n"
