"""PostgreSQL as a test reads it: a plain psycopg connection, and the schema as data."""

from __future__ import annotations

from typing import Any

import psycopg

from mmq.jobs.records import psycopg_url


def connect(database_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection (each statement sees the latest committed state)."""
    return psycopg.connect(psycopg_url(database_url), autocommit=True)


def schema_snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything a migration defines in the public schema, in a comparable form: the
    columns (with type, nullability and default), the indexes and constraints, the
    extensions and the Alembic version."""
    queries = {
        "columns": "SELECT table_name, column_name, data_type, udt_name, is_nullable,"
        " column_default FROM information_schema.columns WHERE table_schema = 'public'",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public'",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "extensions": "SELECT extname, extversion FROM pg_extension",
        "version": "SELECT version_num FROM alembic_version",
    }
    with connect(database_url) as conn:
        return {
            name: sorted(conn.execute(sql).fetchall(), key=repr) for name, sql in queries.items()
        }
