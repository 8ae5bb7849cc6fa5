"""`mmq status` without a job id: queue depths, the workers consuming each queue, ingest
jobs by state and the oldest unfinished one, from the Client and the command line."""

from __future__ import annotations

import json

import pytest

from mmq.client import Client
from mmq.schemas import IngestItem
from tests.support.cli import mmq
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow


def test_the_overview_names_queues_workers_and_jobs(client: Client, workers: Procs) -> None:
    job = client.ingest([IngestItem(text="a cat")], collection=fresh("overview"))
    job.result(timeout=120)
    seen = client.overview()
    assert {"ingest", "search", "ingest.lite", "search.lite"} <= set(seen.queues)
    assert seen.queues["ingest"].workers and seen.queues["search"].workers
    assert seen.queues["ingest.lite"].workers == seen.queues["ingest"].workers
    assert seen.jobs["done"] >= 1 and set(seen.jobs) == {"queued", "running", "done"}

    printed = json.loads(mmq("status", "--json").stdout)
    assert printed["queues"]["search"]["workers"] == seen.queues["search"].workers
    assert {"depth", "workers"} == set(printed["queues"]["ingest"])
    assert "oldest_unfinished_s" in printed
    text = mmq("status").stdout
    assert "queue ingest: " in text and "ingest jobs: " in text
