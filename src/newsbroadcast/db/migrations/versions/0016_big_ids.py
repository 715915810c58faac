"""big ids: delivery and post ids (and folded delivery counts) are 64-bit

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-01

Years of history outgrow 32-bit ids: one row per subscriber per edition reaches 2^31 after
about two billion messages. On PostgreSQL the columns and their sequences become BIGINT
(a rewrite of each table, holding its lock while it runs: plan it for a quiet hour on a
large database). On SQLite nothing changes: an INTEGER PRIMARY KEY already is the 64-bit
rowid, and the models keep INTEGER there (a BIGINT primary key would lose the rowid's
autoincrement); a batch there would copy every table to store the same thing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (("deliveries", "id"), ("posts", "id"), ("erased_deliveries", "count"))


def _retype(to: sa.types.TypeEngine[int], sequence_type: str) -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column in COLUMNS:
        if not postgres:
            continue  # see the docstring: SQLite's INTEGER already holds 64 bits
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=to, existing_nullable=False)
        if column == "id":
            op.execute(f"ALTER SEQUENCE IF EXISTS {table}_id_seq AS {sequence_type}")


def upgrade() -> None:
    _retype(BIG, "bigint")


def downgrade() -> None:
    _retype(sa.Integer(), "integer")
