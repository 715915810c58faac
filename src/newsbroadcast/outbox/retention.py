"""Retention: per-subscriber delivery rows older than ``retention.deliveries`` are folded
into per-edition counts of each outcome (the ``erased_deliveries`` rows an erasure also
adds to), so years of history do not weigh on every send, and every count of an edition's
deliveries (``delivery_counts``) reads the same before and after.

Only rows that have ended (sent, failed, skipped) are folded; one still queued or sending,
however old, is left for the dispatcher. Each edition is folded in a transaction of its
own, set-based (``INSERT … SELECT … GROUP BY`` and a ``DELETE``, no row through Python), so
a first fold of years of rows holds no lock for long and a failure loses nothing: the next
run starts where this one stopped.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.db.models import Delivery, Edition, ErasedDeliveries, SendStatus, UTCDateTime

log = logging.getLogger("newsbroadcast.retention")

ENDED = (SendStatus.sent, SendStatus.failed, SendStatus.skipped)
_folded = cast(Table, ErasedDeliveries.__table__)


def fold_deliveries(sessions: sessionmaker[Session], cutoff: datetime) -> int:
    """Fold every ended delivery created before ``cutoff``; the number of rows folded."""
    with sessions() as session:
        editions = session.scalars(
            select(Edition.id).where(Edition.created_at < cutoff).order_by(Edition.id)
        ).all()
    total = 0
    for edition_id in editions:
        with sessions.begin() as session:
            total += _fold_edition(session, edition_id, cutoff)
    if total:
        log.info("retention: %d deliveries folded into per-edition counts", total,
                 extra={"deliveries": total})  # fmt: skip
    return total


# On PostgreSQL the rows counted are the rows deleted (one statement: data-modifying CTEs),
# so a row that ends between a count and a separate delete cannot be lost.
_FOLD_POSTGRES = text(
    """
    WITH removed AS (
        DELETE FROM deliveries
        WHERE edition_id = :edition AND created_at < :cutoff AND status IN :ended
        RETURNING status
    ), folded AS (
        INSERT INTO erased_deliveries (edition_id, status, count)
        SELECT :edition, status, count(*) FROM removed GROUP BY status
        ON CONFLICT (edition_id, status)
        DO UPDATE SET count = erased_deliveries.count + excluded.count
    )
    SELECT count(*) FROM removed
    """
).bindparams(bindparam("cutoff", type_=UTCDateTime()), bindparam("ended", expanding=True))


def _fold_edition(session: Session, edition_id: int, cutoff: datetime) -> int:
    if session.get_bind().dialect.name == "postgresql":
        params = {"edition": edition_id, "cutoff": cutoff, "ended": [str(s) for s in ENDED]}
        return int(session.scalar(_FOLD_POSTGRES, params) or 0)
    # SQLite holds its write lock from the INSERT to the commit: nothing ends in between.
    old = (
        Delivery.edition_id == edition_id,
        Delivery.created_at < cutoff,
        Delivery.status.in_(ENDED),
    )
    rows = int(session.scalar(select(func.count()).select_from(Delivery).where(*old)) or 0)
    if not rows:
        return 0
    counts = (
        select(Delivery.edition_id, Delivery.status, func.count())
        .where(*old)
        .group_by(Delivery.edition_id, Delivery.status)
    )
    upsert = sqlite.insert(_folded).from_select(["edition_id", "status", "count"], counts)
    session.execute(
        upsert.on_conflict_do_update(
            index_elements=["edition_id", "status"],
            set_={"count": _folded.c.count + upsert.excluded["count"]},
        )
    )
    session.execute(delete(Delivery).where(*old))
    return rows


def delivery_counts(session: Session, edition_id: int | None = None) -> dict[str, int]:
    """Deliveries by outcome (all editions', or one's): the rows kept one by one plus the
    counts folded from erased subscribers and by retention."""
    rows = select(Delivery.status, func.count()).group_by(Delivery.status)
    folded = select(ErasedDeliveries.status, func.sum(ErasedDeliveries.count)).group_by(
        ErasedDeliveries.status
    )
    if edition_id is not None:
        rows = rows.where(Delivery.edition_id == edition_id)
        folded = folded.where(ErasedDeliveries.edition_id == edition_id)
    counts: dict[str, int] = {}
    for query in (rows, folded):
        for status, n in session.execute(query).tuples():
            counts[str(status)] = counts.get(str(status), 0) + int(n or 0)
    return counts
