"""Ingest jobs in PostgreSQL: the source of truth for what was accepted and how it ended.

A job is split into tasks (one Celery message each, whose id is the task's id); a task
holds its request, so a lost message can be sent again. Each accepted item has a row that
ends `stored` (with its item id) or `failed` (with the reason); `attempts` counts the tries
that included it, so an item that kills its worker is quarantined after a few.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    now = sa.func.now()
    op.create_table(
        "ingest_jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("collection", sa.Text, nullable=False),
        sa.Column("total_items", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    )
    op.create_table(
        "ingest_tasks",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "job_id",
            sa.Text,
            sa.ForeignKey("ingest_jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("first_index", sa.Integer, nullable=False),  # job-wide index of item 0
        sa.Column("request", JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("state IN ('queued', 'running', 'done')", name="ingest_tasks_state"),
        sa.UniqueConstraint("job_id", "ordinal", name="ingest_tasks_job_ordinal"),
    )
    # The reconciler looks for unfinished tasks only.
    op.execute(
        "CREATE INDEX ingest_tasks_unfinished ON ingest_tasks (sent_at) WHERE state <> 'done'"
    )
    op.create_table(
        "ingest_job_items",
        sa.Column(
            "job_id",
            sa.Text,
            sa.ForeignKey("ingest_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("index", sa.Integer, primary_key=True),
        sa.Column(
            "task_id",
            sa.Text,
            sa.ForeignKey("ingest_tasks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("item_id", sa.BigInteger, sa.ForeignKey("items.id", ondelete="SET NULL")),
        sa.Column("duration_s", sa.Double),
        sa.Column("segments", sa.Integer),
        sa.CheckConstraint(
            "status IN ('pending', 'stored', 'failed')", name="ingest_job_items_status"
        ),
    )
    op.create_index("ingest_job_items_task", "ingest_job_items", ["task_id"])


def downgrade() -> None:
    op.drop_table("ingest_job_items")
    op.drop_table("ingest_tasks")
    op.drop_table("ingest_jobs")
