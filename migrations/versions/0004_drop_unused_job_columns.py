"""Drop job columns nothing reads or writes: `ingest_jobs.total_items` (the items are
counted from their rows) and `ingest_tasks.error` (errors live on the items).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("ingest_jobs", "total_items")
    op.drop_column("ingest_tasks", "error")


def downgrade() -> None:
    op.add_column("ingest_tasks", sa.Column("error", sa.Text))
    op.add_column(
        "ingest_jobs",
        sa.Column("total_items", sa.Integer, nullable=False, server_default="0"),
    )
    op.execute(
        "UPDATE ingest_jobs j SET total_items ="
        " (SELECT count(*) FROM ingest_job_items i WHERE i.job_id = j.id)"
    )
