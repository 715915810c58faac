"""delivery semantics: claims apart from attempts, refusal times, send slots released

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Until now a claim counted as an attempt; from here on a claim counts only in `claims`.
    for table in ("deliveries", "posts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("refused_at", sa.DateTime(), nullable=True))
    op.create_index("ix_deliveries_edition_sent", "deliveries", ["edition_id", "sent_at"])
    op.create_index("ix_deliveries_edition_refused", "deliveries", ["edition_id", "refused_at"])
    with op.batch_alter_table("editions") as batch:
        batch.add_column(sa.Column("autopause_from", sa.DateTime(), nullable=True))
    with op.batch_alter_table("send_slots") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_slots") as batch:
        batch.drop_column("released_at")
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("autopause_from")
    op.drop_index("ix_deliveries_edition_refused", table_name="deliveries")
    op.drop_index("ix_deliveries_edition_sent", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("refused_at")
    for table in ("deliveries", "posts"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("claims")
