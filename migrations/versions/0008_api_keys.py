"""API keys of the HTTP API (mmq/store/api_keys.py, `mmq keys`): only each key's SHA-256 is
stored, with its public prefix, its role and the collections it may see.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("collections", postgresql.ARRAY(sa.Text), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("prefix", name="api_keys_prefix"),
        sa.UniqueConstraint("key_hash", name="api_keys_key_hash"),
        sa.CheckConstraint("role IN ('read', 'write', 'admin')", name="api_keys_role"),
        # A key scoped to nothing could see nothing: refuse it here too, not only in Python.
        sa.CheckConstraint("cardinality(collections) > 0", name="api_keys_collections"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
