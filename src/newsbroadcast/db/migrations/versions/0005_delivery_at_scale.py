"""delivery at scale: rate limit state shared by every dispatcher

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_locks",
        sa.Column("transport", sa.String(length=200), nullable=False),
        sa.Column("touched_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("transport"),
    )
    op.create_table(
        "send_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=200), nullable=False),
        sa.Column("taken_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_send_slots_transport_taken", "send_slots", ["transport", "taken_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_send_slots_transport_taken", table_name="send_slots")
    op.drop_table("send_slots")
    op.drop_table("rate_limit_locks")
