"""Each stored item of an ingest job says whether it replaced an item of the collection
with the same key (`ingest_job_items.replaced`). Rows written before this revision did not
know: they read false.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "ingest_job_items",
        sa.Column("replaced", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("ingest_job_items", "replaced")
