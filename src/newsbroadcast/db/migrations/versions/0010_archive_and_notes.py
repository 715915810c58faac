"""articles.archive, source_state.caught_up_at and notes; far-future dates taken as first seen

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Mirrors store.FUTURE_SLACK: a date further ahead than this is not a publication date.
_FUTURE_SLACK = timedelta(days=1)


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(
            sa.Column("archive", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("source_state") as batch:
        batch.add_column(sa.Column("caught_up_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    bind = op.get_bind()
    state = sa.table(
        "source_state",
        sa.column("last_success_at", sa.DateTime()),
        sa.column("caught_up_at", sa.DateTime()),
    )
    # A source polled successfully before has been met: its new stories are news.
    bind.execute(sa.update(state).values(caught_up_at=state.c.last_success_at))
    # Dates stored before the store refused them (2999, 9999) led every digest.
    articles = sa.table(
        "articles",
        sa.column("id", sa.Integer()),
        sa.column("published_at", sa.DateTime()),
        sa.column("first_seen_at", sa.DateTime()),
    )
    ahead = bind.execute(
        sa.select(articles.c.id, articles.c.published_at, articles.c.first_seen_at).where(
            articles.c.published_at > articles.c.first_seen_at
        )
    ).all()
    for row in ahead:
        if row.published_at - row.first_seen_at > _FUTURE_SLACK:
            bind.execute(
                sa.update(articles)
                .where(articles.c.id == row.id)
                .values(published_at=row.first_seen_at)
            )


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("notes")
        batch.drop_column("caught_up_at")
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("archive")
