"""Engine and sessions. One engine per process, created after fork."""

from __future__ import annotations

import psycopg
from sqlalchemy import Engine, create_engine
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


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=pool_size)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
