"""Videos: the `video` item kind, its duration, and its time segments with vectors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("items_kind", "items", type_="check")
    op.create_check_constraint("items_kind", "items", "kind IN ('image', 'text', 'pair', 'video')")
    op.add_column("items", sa.Column("duration_s", sa.Double))
    op.create_table(
        "segments",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column(
            "item_id", sa.BigInteger, sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "collection_id",
            sa.Integer,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("start_s", sa.Double, nullable=False),
        sa.Column("end_s", sa.Double, nullable=False),
        sa.Column("keyframe_s", sa.Double, nullable=False),
        sa.Column("vector", Vector(), nullable=False),
        sa.UniqueConstraint("item_id", "ordinal", name="segments_item_ordinal"),
        sa.CheckConstraint(
            "0 <= start_s AND start_s <= keyframe_s AND keyframe_s <= end_s",
            name="segments_times",
        ),
    )
    # Collections made before this revision get their segment index now (new ones get it
    # when they are created, in store/repository.py), with the default HNSW parameters.
    bind = op.get_bind()
    for cid, dim in bind.execute(sa.text("SELECT id, dim FROM collections")):
        op.execute(
            f"CREATE INDEX IF NOT EXISTS segments_hnsw_c{int(cid)} ON segments "
            f"USING hnsw ((vector::vector({int(dim)})) vector_cosine_ops) "
            f"WITH (m = 16, ef_construction = 64) WHERE collection_id = {int(cid)}"
        )


def downgrade() -> None:
    op.drop_table("segments")
    op.execute("DELETE FROM items WHERE kind = 'video'")
    op.drop_column("items", "duration_s")
    op.drop_constraint("items_kind", "items", type_="check")
    op.create_check_constraint("items_kind", "items", "kind IN ('image', 'text', 'pair')")
