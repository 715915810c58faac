"""lean delivery indexes: on PostgreSQL the due index holds only due rows and the
Message-ID index only rows with a Message-ID

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

Each delivery row is written three times (the fan-out's INSERT, the claim's UPDATE, the
record's UPDATE), and none of these updates can be HOT (each changes an indexed column),
so every write adds an entry to every index whose predicate the new row meets. With the
due index (status, next_attempt_at, id) limited to `queued` and `sending` rows, the record
(a row becoming `sent`) no longer adds one, and the index stays the size of the queue
instead of the size of the history. With the Message-ID index limited to rows that have
one, the fan-out and the claim (no Message-ID yet) add none. Every lookup by Message-ID
is an equality, which implies IS NOT NULL, so the planner uses the partial index as before;
the claim repeats the due predicate literally (outbox/claim.py) so a generic plan uses it.

On SQLite nothing changes (the models keep full indexes there; SQLite's record is written
in our own process, and its planner needs the predicate spelled out in each query).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name, columns, predicate on PostgreSQL
INDEXES = (
    ("ix_deliveries_due", ["status", "next_attempt_at", "id"], "status IN ('queued', 'sending')"),
    ("ix_deliveries_message_id", ["message_id"], "message_id IS NOT NULL"),
)


def _reindex(partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns, predicate in INDEXES:
        op.drop_index(name, table_name="deliveries")
        where = sa.text(predicate) if partial else None
        op.create_index(name, "deliveries", columns, postgresql_where=where)


def upgrade() -> None:
    _reindex(partial=True)


def downgrade() -> None:
    _reindex(partial=False)
