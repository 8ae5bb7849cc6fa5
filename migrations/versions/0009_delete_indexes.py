"""Indexes that deletes need: `ingest_job_items.item_id` (its foreign key is ON DELETE SET
NULL, so every deleted item otherwise scans the whole job history) and `items.uri` (a
deleted item's media-store file goes only when no other item references it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ingest_job_items_item", "ingest_job_items", ["item_id"])
    op.create_index("items_uri", "items", ["uri"])


def downgrade() -> None:
    op.drop_index("items_uri", table_name="items")
    op.drop_index("ingest_job_items_item", table_name="ingest_job_items")
