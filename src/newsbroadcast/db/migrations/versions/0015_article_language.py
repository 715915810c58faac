"""article_language: the story's language from its source, for the posts' language

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: stories stored before this say nothing of their language, and
    # their posts keep the channel's setting.
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("language")
