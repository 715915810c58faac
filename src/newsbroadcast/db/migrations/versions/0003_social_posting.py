"""posts.first_attempt_at (settling ambiguous posts) and channel_state.next_post_at (pace)

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts") as batch:
        batch.add_column(sa.Column("first_attempt_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("channel_state") as batch:
        batch.add_column(sa.Column("next_post_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_state") as batch:
        batch.drop_column("next_post_at")
    with op.batch_alter_table("posts") as batch:
        batch.drop_column("first_attempt_at")
