"""Collections may use the learned `autoencoder` fusion (mmq/encoders/autoencoder.py): their
vectors are the codes of the model's pair autoencoder, and their model version carries its
hash. Downgrading fails while such a collection exists: drop it first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("collections_fusion", "collections", type_="check")
    op.create_check_constraint(
        "collections_fusion",
        "collections",
        "fusion IN ('sum', 'concat', 'attention', 'autoencoder')",
    )


def downgrade() -> None:
    op.drop_constraint("collections_fusion", "collections", type_="check")
    op.create_check_constraint(
        "collections_fusion", "collections", "fusion IN ('sum', 'concat', 'attention')"
    )
