"""A transport's sending limit, shared by every dispatcher through the database.

A limit kept in each process's memory is broken as soon as a second process runs (five
workers under a 200-per-hour limit would send 1,000). Here every message first takes a
*send slot*: a row in ``send_slots``. Taking slots happens under one lock per transport
(an UPDATE of its ``rate_limit_locks`` row: a row lock on PostgreSQL, the database's write
lock on SQLite), so all dispatchers together, before and after restarts, stay within
``per_second`` slots in any second and ``per_hour`` slots in any hour (sliding windows).

A slot counts from when it is taken until one window after its message's transaction ended
(``release``): the receiver sees a message when its reply comes, which may be well after the
slot was taken, so a slot's window cannot start at the grant. Until released it counts as
in flight (a dead dispatcher's slots stop counting after ``hold``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import RateLimit
from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import RateLimitLock, SendSlot, utcnow

# How soon to look again when the window is full of slots still in flight: they free
# up one window after their messages end, which is not known yet.
IN_FLIGHT_POLL = timedelta(milliseconds=50)


@dataclass(frozen=True)
class Grant:
    """``granted`` messages may go now, one per slot in ``slots`` (to ``release`` once
    they ended); when none may, ``retry_at`` says when one can."""

    granted: int
    retry_at: datetime | None = None
    slots: tuple[int, ...] = ()


class SendRateLimiter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: str,
        limit: RateLimit,
        clock: Callable[[], datetime] = utcnow,
        hold: timedelta = timedelta(minutes=5),
    ) -> None:
        """``hold``: how long a slot never released (its dispatcher died) still counts."""
        self.sessions = sessions
        self.transport = transport
        self.clock = clock
        self.hold = hold
        self.windows = [
            (n, timedelta(seconds=seconds))
            for n, seconds in ((limit.per_second, 1), (limit.per_hour, 3600))
            if n is not None
        ]

    @property
    def enabled(self) -> bool:
        return bool(self.windows)

    def available(self) -> int:
        """How many slots look free now, read without the lock: a hint for sizing a claim,
        not a promise (``take`` decides)."""
        if not self.enabled:
            return 2**31
        now = self.clock()
        with self.sessions() as session:
            return max(0, min(limit - self._count(session, now, w) for limit, w in self.windows))

    def take(self, wanted: int) -> Grant:
        """Take up to ``wanted`` slots (all or some); committed before returning."""
        if not self.enabled or wanted <= 0:
            return Grant(wanted)
        with self.sessions() as session:
            self._lock(session)
            now = self.clock()  # read after the lock: another dispatcher may have waited too
            longest = max(max(w for _, w in self.windows), self.hold)
            session.execute(
                delete(SendSlot).where(
                    SendSlot.transport == self.transport,
                    func.coalesce(SendSlot.released_at, SendSlot.taken_at) <= now - longest,
                )
            )
            free = wanted
            retry_at: datetime | None = None
            for limit, window in self.windows:
                used = self._count(session, now, window)
                free = min(free, limit - used)
                if used >= limit:
                    free_at = self._frees_at(session, now, window, used - limit)
                    retry_at = free_at if retry_at is None else max(retry_at, free_at)
            slots: list[int] = []
            if free > 0:
                slots = list(
                    session.scalars(
                        insert(SendSlot).returning(SendSlot.id),
                        [{"transport": self.transport, "taken_at": now}] * free,
                    )
                )
            session.commit()
        return Grant(max(free, 0), None if free > 0 else retry_at, tuple(slots))

    def release(self, slots: Sequence[int], ended: Sequence[datetime]) -> None:
        """The messages of ``slots`` ended at ``ended`` (one time per slot, in order); slots
        beyond ``ended`` were not used and are given back."""
        if not slots:
            return
        used = [{"b_id": i, "b_at": at} for i, at in zip(slots, ended, strict=False)]
        unused = list(slots[len(used) :])
        with self.sessions() as session:
            if used:
                # Declarative types __table__ as any FromClause; a class mapped by
                # __tablename__ has a Table.
                slots_table = cast(Table, SendSlot.__table__)
                session.execute(
                    update(slots_table)
                    .where(slots_table.c.id == bindparam("b_id"))
                    .values(released_at=bindparam("b_at")),
                    used,
                )
            if unused:
                session.execute(delete(SendSlot).where(SendSlot.id.in_(unused)))
            session.commit()

    def _in_window(self, now: datetime, window: timedelta) -> ColumnElement[bool]:
        return and_(
            SendSlot.transport == self.transport,
            or_(
                SendSlot.released_at > now - window,
                and_(SendSlot.released_at.is_(None), SendSlot.taken_at > now - self.hold),
            ),
        )

    def _count(self, session: Session, now: datetime, window: timedelta) -> int:
        return (
            session.scalar(
                select(func.count()).select_from(SendSlot).where(self._in_window(now, window))
            )
            or 0
        )

    def _frees_at(self, session: Session, now: datetime, window: timedelta, over: int) -> datetime:
        """When the window has a free slot again: once the ``over``-th oldest released slot
        leaves it, or, while some are in flight, soon (they may end any moment)."""
        in_flight = session.scalar(
            select(func.count())
            .select_from(SendSlot)
            .where(self._in_window(now, window), SendSlot.released_at.is_(None))
        )
        if in_flight:
            return now + IN_FLIGHT_POLL
        oldest = session.scalar(
            select(SendSlot.released_at)
            .where(self._in_window(now, window))
            .order_by(SendSlot.released_at)
            .offset(over)
            .limit(1)
        )
        return (oldest or now) + window

    def _lock(self, session: Session) -> None:
        """Hold this transport's lock until the session commits."""
        dialect = session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        # The UPDATE comes first and is what locks; the insert only makes the row once.
        locked = rowcount(
            session.execute(
                update(RateLimitLock)
                .where(RateLimitLock.transport == self.transport)
                .values(touched_at=utcnow())
            )
        )
        if not locked:
            session.execute(
                module.insert(RateLimitLock)
                .values(transport=self.transport, touched_at=utcnow())
                .on_conflict_do_nothing(index_elements=["transport"])
            )
            session.execute(
                update(RateLimitLock)
                .where(RateLimitLock.transport == self.transport)
                .values(touched_at=utcnow())
            )
