"""Interaction events: what a user did with an item of a collection, and when.

Producers write them (`Client.record`, `mmq events add|load`) with no model call; the
recommend task reads a user's events as a profile, and everyone's as the popular items.
Items are named by collection name and external id, not by foreign keys: events may be
recorded before their items are ingested, and survive an item being replaced.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("weight", sa.Double, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    # A user's profile, and the collection's most interacted-with items.
    op.create_index("events_user", "events", ["collection", "user_id"])
    op.create_index("events_item", "events", ["collection", "external_id"])


def downgrade() -> None:
    op.drop_table("events")
