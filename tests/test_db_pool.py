"""The database pool's liveness check (mmq/store/db.py): a connection idle for a while is
pinged before use and replaced when PostgreSQL dropped it; one in steady use is not."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, text

from mmq.embedded import Urls
from mmq.jobs.records import psycopg_url
from mmq.store import db
from mmq.store.db import DATABASE_DOWN, make_engine

pytestmark = pytest.mark.slow


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def drop(urls: Urls, pid: int) -> None:
    """What a PostgreSQL restart does to every connection of the pool."""
    with psycopg.connect(psycopg_url(urls.database_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_an_idle_connection_is_pinged_and_a_dropped_one_replaced(
    urls: Urls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
    engine = make_engine(urls.database_url, pool_size=1)
    first = backend_pid(engine)
    drop(urls, first)
    assert backend_pid(engine) != first  # no error: the ping found it gone
    engine.dispose()


def test_a_connection_in_steady_use_is_not_pinged_and_its_loss_fails_once(
    urls: Urls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)
    engine = make_engine(urls.database_url, pool_size=1)
    first = backend_pid(engine)
    drop(urls, first)
    with pytest.raises(DATABASE_DOWN):  # the work is tried again (workers/tasks.py)
        backend_pid(engine)
    assert backend_pid(engine) != first  # the error emptied the pool
    engine.dispose()
