"""deliveries/posts: the due index also orders by id, the claim's order

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (("deliveries", "ix_deliveries_due"), ("posts", "ix_posts_due"))


def upgrade() -> None:
    # A claim takes the oldest due rows, in (next_attempt_at, id) order: with id in the
    # index, the database reads just the rows it takes, instead of every queued row of a
    # 100,000-recipient edition, sorted, for each batch.
    for table, index in TABLES:
        op.drop_index(index, table_name=table)
        op.create_index(index, table, ["status", "next_attempt_at", "id"])


def downgrade() -> None:
    for table, index in TABLES:
        op.drop_index(index, table_name=table)
        op.create_index(index, table, ["status", "next_attempt_at"])
