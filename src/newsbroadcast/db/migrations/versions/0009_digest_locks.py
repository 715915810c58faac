"""digest_locks: planning one digest's edition is serialised in the database

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Two triggers of one digest at once (two `run --once --force`) both read the previous
    # cutoff and each made an edition: the planner now takes this row's lock first.
    op.create_table(
        "digest_locks",
        sa.Column("digest", sa.String(length=200), nullable=False),
        sa.Column("touched_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("digest_locks")
