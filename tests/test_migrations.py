"""Alembic upgrade and downgrade on a fresh database."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from mmq.store.migrate import downgrade, upgrade

pytestmark = pytest.mark.slow  # each test creates and drops a database on the session's server


def state(url: str) -> tuple[set[str], bool]:
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        has_vector = bool(
            conn.scalar(text("SELECT count(*) FROM pg_extension WHERE extname = 'vector'"))
        )
    engine.dispose()
    return tables, has_vector


def test_upgrade_downgrade_upgrade(fresh_database_url: str) -> None:
    assert state(fresh_database_url) == (set(), False)
    upgrade(fresh_database_url)
    tables, has_vector = state(fresh_database_url)
    assert {"collections", "items", "alembic_version"} <= tables and has_vector
    downgrade(fresh_database_url, "base")
    tables, has_vector = state(fresh_database_url)
    assert tables <= {"alembic_version"} and not has_vector
    upgrade(fresh_database_url)
    assert {"collections", "items"} <= state(fresh_database_url)[0]


def test_schema_matches_the_orm(fresh_database_url: str) -> None:
    from mmq.store.tables import Base

    upgrade(fresh_database_url)
    engine = create_engine(fresh_database_url)
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in Base.metadata.sorted_tables:
            db_cols = {c["name"] for c in insp.get_columns(table.name)}
            assert db_cols == {c.name for c in table.columns}, table.name
    engine.dispose()


def test_a_worker_on_an_unmigrated_database_says_how_to_fix_it(fresh_database_url: str) -> None:
    from mmq.errors import Unavailable
    from mmq.store.migrate import require_schema

    engine = create_engine(fresh_database_url)
    with pytest.raises(Unavailable, match="run `mmq db upgrade`"):
        require_schema(engine)
    upgrade(fresh_database_url)
    require_schema(engine)
    engine.dispose()
