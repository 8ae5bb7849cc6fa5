"""Fixtures: real servers (embedded, or MMQ_* URLs when set), real workers, the real model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmq.config import Settings
from mmq.embedded import Urls, export_urls, resolve_urls
from tests.support.data import SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    # Offline by construction: nothing in the tests may reach a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
def client(settings: Settings, urls: Urls) -> Iterator[object]:
    from mmq.client import Client

    c = Client(settings, urls)
    yield c
    c.close()


@pytest.fixture(scope="session")
def workers(client, state_dir: Path) -> Iterator[list[object]]:  # type: ignore[no-untyped-def]
    from mmq.cli.spawn import running_workers

    with running_workers(client.app, log_dir=state_dir / "logs") as procs:
        yield procs


@pytest.fixture(scope="session")
def encoder(state_dir: Path):  # type: ignore[no-untyped-def]
    from mmq.encoders import get_encoder

    return get_encoder("lite", "cpu", cache_dir=state_dir / "cache").load()


@pytest.fixture()
def db_session(urls: Urls) -> Iterator[object]:
    from mmq.store.db import make_engine, make_sessionmaker

    engine = make_engine(urls.database_url, pool_size=1)
    with make_sessionmaker(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from mmq.samples import write_photos

    return write_photos(tmp_path_factory.mktemp("photos"))
