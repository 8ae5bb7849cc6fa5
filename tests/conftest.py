"""Fixtures: real servers (embedded, or MMQ_* URLs when set), real workers, the real model.

A test that uses the servers, workers or a fresh database must be marked `slow`
(`make test-fast` deselects those); collection fails if one is not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mmq.config import Settings
from mmq.embedded import Urls, export_urls, resolve_urls
from tests.support.data import SHARED_DATA
from tests.support.procs import Procs

if TYPE_CHECKING:  # the fixtures import these when used: collecting a test stays light
    import httpx
    from sqlalchemy.orm import Session

    from mmq.client import Client
    from mmq.encoders import Encoder
    from tests.support.api import Api

SERVER_FIXTURES = frozenset({"urls", "client", "workers", "db_session", "fresh_database_url"})


def pytest_configure(config: pytest.Config) -> None:
    # Offline by construction: nothing in the tests may reach a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: mark it slow")


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mmq-state")


@pytest.fixture(scope="session")
def settings(state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # Servers a developer left running are never used: embedded ones live in a temp dir,
    # unless the environment names servers explicitly (MMQ_BROKER_URL, MMQ_DATABASE_URL).
    os.environ["MMQ_STATE_DIR"] = str(state_dir)
    # Workers read paths only under these: the tests' temporary files and the dev data.
    os.environ["MMQ_INGEST_ROOTS"] = os.pathsep.join(
        [str(tmp_path_factory.getbasetemp().resolve()), str(SHARED_DATA)]
    )
    return Settings()


@pytest.fixture(scope="session")
def urls(settings: Settings) -> Urls:
    from mmq.store.migrate import upgrade

    resolved = resolve_urls(settings)
    export_urls(resolved)  # worker subprocesses inherit these
    upgrade(resolved.database_url)
    return resolved


@pytest.fixture(scope="session")
def client(settings: Settings, urls: Urls) -> Iterator[Client]:
    from mmq.client import Client

    c = Client(settings, urls)
    yield c
    c.close()


@pytest.fixture(scope="session")
def workers(client: Client, state_dir: Path) -> Iterator[Procs]:
    """An ingest worker (first) and a search worker, for the whole session."""
    from mmq.cli.spawn import running_workers

    with running_workers(client.app, log_dir=state_dir / "logs") as procs:
        yield procs


@pytest.fixture(scope="session")
def encoder(state_dir: Path) -> Encoder:
    from mmq.encoders import get_encoder

    return get_encoder("lite", "cpu", cache_dir=state_dir / "cache").load()


@pytest.fixture()
def db_session(urls: Urls) -> Iterator[Session]:
    from mmq.store.db import make_engine, make_sessionmaker

    engine = make_engine(urls.database_url, pool_size=1)
    with make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture()
def fresh_database_url(urls: Urls) -> Iterator[str]:
    """An empty database on the session's server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from mmq.store.db import sqlalchemy_url

    name = f"mmq_fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(sqlalchemy_url(urls.database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(sqlalchemy_url(urls.database_url)).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mmq.samples import write_photos

    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def api(settings: Settings, urls: Urls, workers: Procs) -> Iterator[Api]:
    """The HTTP API (uvicorn in a thread, a free loopback port), one per test module."""
    from tests.support.api import serving

    with serving(settings, urls) as api:
        yield api


@pytest.fixture(scope="module")
def http(api: Api) -> Iterator[httpx.Client]:
    """A client of the module's API."""
    import httpx

    with httpx.Client(base_url=api.url, timeout=60) as http:
        yield http
