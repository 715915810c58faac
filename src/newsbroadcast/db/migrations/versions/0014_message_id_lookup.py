"""message-id indexes: a bounce or complaint finds its delivery by the Message-ID it names

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_deliveries_message_id", "deliveries", ["message_id"])
    op.create_index("ix_transactional_emails_message_id", "transactional_emails", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_transactional_emails_message_id", "transactional_emails")
    op.drop_index("ix_deliveries_message_id", "deliveries")
