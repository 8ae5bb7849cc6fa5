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
    with pytest.raises(Unavailable, match="no mmq schema: run `mmq db upgrade`"):
        require_schema(engine)
    upgrade(fresh_database_url, "0004")  # an older mmq's schema: one column short
    with pytest.raises(Unavailable, match="at revision 0004, this mmq needs .*: run `mmq db"):
        require_schema(engine)
    upgrade(fresh_database_url)
    require_schema(engine)
    engine.dispose()


def test_0005_adds_replaced_false_for_rows_written_before_and_drops_it_on_downgrade(
    fresh_database_url: str,
) -> None:
    from tests.support.db import connect

    def item_columns() -> set[str]:
        engine = create_engine(fresh_database_url)
        with engine.connect() as conn:
            names = {c["name"] for c in inspect(conn).get_columns("ingest_job_items")}
        engine.dispose()
        return names

    upgrade(fresh_database_url, "0004")
    assert "replaced" not in item_columns()
    with connect(fresh_database_url) as conn:
        conn.execute("INSERT INTO ingest_jobs (id, collection) VALUES ('j', 'c')")
        conn.execute(
            "INSERT INTO ingest_tasks (id, job_id, ordinal, first_index, request)"
            " VALUES ('t', 'j', 0, 0, '{}')"
        )
        conn.execute(
            "INSERT INTO ingest_job_items (job_id, index, task_id, source, status)"
            " VALUES ('j', 0, 't', 'a.jpg', 'stored')"
        )
    upgrade(fresh_database_url)
    with connect(fresh_database_url) as conn:
        row = conn.execute("SELECT status, replaced FROM ingest_job_items").fetchone()
    assert row == ("stored", False)
    downgrade(fresh_database_url, "0004")
    assert "replaced" not in item_columns()
    upgrade(fresh_database_url)
    assert "replaced" in item_columns()
