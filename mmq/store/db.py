"""Engine and sessions. One engine per process, created after fork."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from mmq.errors import BadRequest

# What PostgreSQL going away (or a connection to it breaking) raises, through the ORM or
# through psycopg directly (the job records): the work waits for it to answer again.
DATABASE_DOWN: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL → the psycopg 3 driver URL SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise BadRequest(f"not a PostgreSQL URL: {url!r}")


# A pooled connection idle for longer is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    engine = create_engine(sqlalchemy_url(url), pool_size=pool_size)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, for connections that sat idle: one that went stale (PostgreSQL
    restarted meanwhile) is replaced before any work runs on it. A connection in steady use
    skips the round trip, which was one in every few statements of an ingest; if it breaks
    anyway, the error invalidates the whole pool and the work is tried again."""

    @event.listens_for(engine.pool, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _taken(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa_exc.DisconnectionError(f"a pooled connection went stale: {exc}") from exc


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
