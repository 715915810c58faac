"""feedback_receipts: bounce and complaint webhook events already handled (dedupe, replays)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback_receipts",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_feedback_receipts_received_at", "feedback_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_receipts_received_at", table_name="feedback_receipts")
    op.drop_table("feedback_receipts")
