"""big ids: delivery and post ids (and folded delivery counts) are 64-bit; on
PostgreSQL the autopause indexes hold only rows with a time


Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

Years of history outgrow 32-bit ids: one row per subscriber per edition reaches 2^31 after
about two billion messages. On PostgreSQL the columns and their sequences become BIGINT
(a rewrite of each table, holding its lock while it runs: plan it for a quiet hour on a
large database). On SQLite nothing changes: an INTEGER PRIMARY KEY already is the 64-bit
rowid, and the models keep INTEGER there (a BIGINT primary key would lose the rowid's
autoincrement); a batch there would copy every table to store the same thing.

The automatic pause's indexes (edition_id, sent_at) and (edition_id, refused_at) become
partial on PostgreSQL (the time IS NOT NULL, as every query of them says): a row's insert
by the fan-out and its update by the claim then touch two indexes fewer.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
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


PARTIAL = (
    ("ix_deliveries_edition_sent", "sent_at"),
    ("ix_deliveries_edition_refused", "refused_at"),
)


def _reindex(partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, column in PARTIAL:
        op.drop_index(name, table_name="deliveries")
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        op.create_index(name, "deliveries", ["edition_id", column], postgresql_where=where)


def upgrade() -> None:
    _retype(BIG, "bigint")
    _reindex(partial=True)


def downgrade() -> None:
    _reindex(partial=False)
    _retype(sa.Integer(), "integer")
