"""Claims on outbox rows: a claim is a lease, taken with SKIP LOCKED on PostgreSQL, given
back unspent, renewed while a slow server works through a batch; and the capped backoff
between tries. A claim never counts as an attempt: a crash must not use up a message's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Select, any_, cast, func, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from newsbroadcast.db.models import Delivery, OutboxRow, Post, SendStatus, TransactionalEmail

MAX_BACKOFF = timedelta(hours=6)
# The predicate of PostgreSQL's partial due index (migration 0017), as literals: bound
# parameters would let only a custom plan prove that the index covers the claim's rows.
DUE: tuple[ColumnClause[Any], ...] = (literal_column("'queued'"), literal_column("'sending'"))


def backoff(base: timedelta, attempts: int) -> timedelta:
    """base, 2·base, 4·base, … capped at six hours (for any count: an outage's tries
    keep counting for as long as it lasts)."""
    delay = base
    for _ in range(max(attempts - 1, 0)):
        if delay >= MAX_BACKOFF:
            break
        delay *= 2
    return min(delay, MAX_BACKOFF)


def claim(
    session: Session,
    model: type[Delivery] | type[Post] | type[TransactionalEmail],
    now: datetime,
    lease: timedelta,
    limit: int,
    extra: Sequence[Any] = (),
) -> list[int]:
    """Take up to ``limit`` due rows: `sending` ones whose lease ran out (a dead
    dispatcher's), then queued ones, oldest due first. A claim counts in ``claims``, not
    in ``attempts``: a crash must not use up a message's attempts.

    Each step is one UPDATE … WHERE id picked by a SELECT … FOR UPDATE SKIP LOCKED …
    RETURNING: on PostgreSQL concurrent dispatchers get disjoint rows without waiting on
    each other; on SQLite the statement holds the write lock, which serialises claims just
    as well. Both steps commit together.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    steps = (
        ((model.status == SendStatus.sending, model.lease_until < now), (model.id,)),
        (
            (model.status == SendStatus.queued, model.next_attempt_at <= now),
            # The due index's own order: the database reads only the rows it takes.
            (model.next_attempt_at, model.id),
        ),
    )
    ids: list[int] = []
    for due, order in steps:
        if len(ids) >= limit:
            break
        pick = due_rows(model, (*due, *extra), order, limit - len(ids), postgres)
        if postgres:
            # ANY(array) rather than IN (subquery): PostgreSQL then reaches the picked rows
            # through the primary key instead of scanning the whole table to join them.
            pick = pick.with_for_update(skip_locked=True)
            picked = select(func.array_agg(pick.subquery().c.id)).scalar_subquery()
            chosen = model.id == any_(cast(picked, ARRAY(model.id.type)))
        else:
            chosen = model.id.in_(pick.scalar_subquery())
        ids += session.scalars(
            update(model)
            .where(chosen)
            .values(status=SendStatus.sending, lease_until=now + lease,
                    claims=model.claims + 1)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
    session.commit()
    return sorted(ids)


def due_rows(
    model: type[Delivery] | type[Post] | type[TransactionalEmail],
    where: Sequence[Any],
    order: Sequence[Any],
    limit: int,
    postgres: bool,
) -> Select[tuple[int]]:
    """The ids of up to ``limit`` rows meeting ``where``, in the due index's ``order``."""
    pick = select(model.id).where(*where).order_by(*order).limit(limit)
    if postgres:
        pick = pick.where(model.status.in_(DUE))
    return pick


def finish(
    session: Session, row: OutboxRow, status: SendStatus, now: datetime, error: str | None = None
) -> None:
    """End ``row``'s claim with ``status`` (``sent`` also stamps ``now``), and commit."""
    row.status = status
    row.lease_until = None
    row.last_error = error
    if status == SendStatus.sent:
        row.sent_at = now
    session.commit()


def release(
    session: Session,
    model: type[Delivery] | type[TransactionalEmail] | type[Post],
    ids: Sequence[int],
    when: datetime,
    error: str | None = None,
) -> None:
    """Give claimed rows back, due at ``when``, without spending an attempt (``error``: why
    they wait, for `status`), and commit. Rows no longer ``sending`` are left as they are."""
    if not ids:
        return
    values: dict[str, Any] = {"status": SendStatus.queued, "lease_until": None,
                              "next_attempt_at": when}  # fmt: skip
    if error is not None:
        values["last_error"] = error
    session.execute(
        update(model)
        .where(model.id.in_(list(ids)), model.status == SendStatus.sending)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()
