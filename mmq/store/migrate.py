"""Run Alembic migrations programmatically (`mmq db upgrade`, tests, the demo)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from mmq.errors import Unavailable

# The top-level migrations/ of the source tree, through the link mmq/store/migrations: a
# wheel (`pip install mmq`) carries the scripts inside the package (pyproject's package-data),
# so an installed producer migrates its embedded database too.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    # No alembic.ini (a wheel has none): what mmq needs of it is set here.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def require_schema(engine: Engine) -> None:
    """Fail with the fix in the message when migrations were never run on this database, or
    not up to this mmq's newest one (a worker would fail on its first write otherwise)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        if conn.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            raise Unavailable("the database has no mmq schema: run `mmq db upgrade`")
        current = conn.scalar(text("SELECT version_num FROM alembic_version"))
    if current != head:
        raise Unavailable(
            f"the database schema is at revision {current}, this mmq needs {head}: "
            "run `mmq db upgrade`"
        )
