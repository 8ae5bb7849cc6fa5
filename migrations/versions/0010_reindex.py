"""Re-embedding a collection with another model (mmq/services/reindex.py): the plan of a
collection's reindex, and the new vectors written beside the old ones until the switch.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One reindex per collection at a time; the row stays after the switch as its record.
    op.execute(
        """
        CREATE TABLE reindexes (
            collection_id integer PRIMARY KEY REFERENCES collections(id) ON DELETE CASCADE,
            model text NOT NULL,
            from_model text NOT NULL,
            job_id text NOT NULL,
            allow_missing boolean NOT NULL DEFAULT false,
            state text NOT NULL DEFAULT 'running',
            error text,
            started_at timestamptz NOT NULL DEFAULT now(),
            ended_at timestamptz
        )
        """
    )
    # The new vectors; `content_hash` is the item's when it was embedded, so an item
    # re-ingested meanwhile is seen as not done yet.
    op.execute(
        """
        CREATE TABLE reindex_vectors (
            item_id bigint PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
            collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            model_version text NOT NULL,
            content_hash text NOT NULL,
            vector vector NOT NULL,
            image_vector vector,
            text_vector vector
        )
        """
    )
    op.execute("CREATE INDEX reindex_vectors_collection ON reindex_vectors (collection_id)")
    op.execute(
        """
        CREATE TABLE reindex_segments (
            item_id bigint NOT NULL REFERENCES items(id) ON DELETE CASCADE,
            collection_id integer NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
            ordinal integer NOT NULL,
            start_s double precision NOT NULL,
            end_s double precision NOT NULL,
            keyframe_s double precision NOT NULL,
            vector vector NOT NULL,
            PRIMARY KEY (item_id, ordinal)
        )
        """
    )
    op.execute("CREATE INDEX reindex_segments_collection ON reindex_segments (collection_id)")


def downgrade() -> None:
    op.execute("DROP TABLE reindex_segments")
    op.execute("DROP TABLE reindex_vectors")
    op.execute("DROP TABLE reindexes")
