"""Alembic environment: the URL comes from mmq (a caller's attribute, or Settings)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from mmq.store.db import sqlalchemy_url
from mmq.store.tables import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.attributes.get("database_url")
    if url is None:
        from mmq.config import get_settings
        from mmq.embedded import resolve_urls

        url = resolve_urls(get_settings()).database_url
    return sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
