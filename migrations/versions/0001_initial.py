"""Collections and items, with pgvector.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("fusion", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.CheckConstraint("dim > 0 AND dim <= 16000", name="collections_dim"),
        sa.CheckConstraint("fusion IN ('sum', 'concat', 'attention')", name="collections_fusion"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("uri", sa.Text),
        sa.Column("text", sa.Text),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("content_hash", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", Vector(), nullable=False),
        sa.Column("image_vector", Vector()),
        sa.Column("text_vector", Vector()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.UniqueConstraint("collection_id", "key", name="items_collection_key"),
        sa.CheckConstraint("kind IN ('image', 'text', 'pair')", name="items_kind"),
        sa.CheckConstraint("vector_dims(vector) = dim", name="items_vector_dim"),
    )
    # Metadata filters use JSON containment (@>), which jsonb_path_ops serves.
    op.execute("CREATE INDEX items_metadata ON items USING gin (metadata jsonb_path_ops)")
    # Per-collection HNSW indexes are created with each collection (store/repository.py).


def downgrade() -> None:
    op.drop_table("items")
    op.drop_table("collections")
    op.execute("DROP EXTENSION IF EXISTS vector")
