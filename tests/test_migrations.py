"""Alembic upgrade and downgrade on a fresh database."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from mmq.store.db import sqlalchemy_url
from mmq.store.migrate import downgrade, upgrade


@pytest.fixture()
def fresh_db(urls):  # type: ignore[no-untyped-def]
    name = f"mmq_migr_{uuid.uuid4().hex[:8]}"
    admin = create_engine(sqlalchemy_url(urls.database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(sqlalchemy_url(urls.database_url)).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def state(url: str) -> tuple[set[str], bool]:
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        has_vector = bool(
            conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
        )
    engine.dispose()
    return tables, has_vector


def test_upgrade_downgrade_upgrade(fresh_db: str) -> None:
    assert state(fresh_db) == (set(), False)
    upgrade(fresh_db)
    tables, has_vector = state(fresh_db)
    assert {"collections", "items", "alembic_version"} <= tables and has_vector
    downgrade(fresh_db, "base")
    tables, has_vector = state(fresh_db)
    assert tables <= {"alembic_version"} and not has_vector
    upgrade(fresh_db)
    assert {"collections", "items"} <= state(fresh_db)[0]


def test_schema_matches_the_orm(fresh_db: str) -> None:
    from mmq.store.tables import Base

    upgrade(fresh_db)
    engine = create_engine(fresh_db)
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in Base.metadata.sorted_tables:
            db_cols = {c["name"] for c in insp.get_columns(table.name)}
            assert db_cols == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_a_worker_on_an_unmigrated_database_says_how_to_fix_it(fresh_db: str) -> None:
    from mmq.errors import Unavailable
    from mmq.store.migrate import require_schema

    engine = create_engine(fresh_db)
    with pytest.raises(Unavailable, match="run `mmq db upgrade`"):
        require_schema(engine)
    upgrade(fresh_db)
    require_schema(engine)
    engine.dispose()
