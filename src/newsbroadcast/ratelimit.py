"""A transport's sending limit, shared by every dispatcher through the database.

A limit kept in each process's memory is broken as soon as a second process runs (five
workers under a 200-per-hour limit would send 1,000). Here every message first takes a
*send slot*: a row in ``send_slots``. Taking slots happens under one lock per transport
(an UPDATE of its ``rate_limit_locks`` row: a row lock on PostgreSQL, the database's write
lock on SQLite), so all dispatchers together, before and after restarts, stay within
``per_second`` slots in any second and ``per_hour`` slots in any hour (sliding windows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config import RateLimit
from newsbroadcast.models import RateLimitLock, SendSlot, utcnow


@dataclass(frozen=True)
class Grant:
    """``granted`` messages may go now; when none may, ``retry_at`` says when one can."""

    granted: int
    retry_at: datetime | None = None


class SendRateLimiter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: str,
        limit: RateLimit,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.transport = transport
        self.clock = clock
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
            longest = max(w for _, w in self.windows)
            session.execute(
                delete(SendSlot).where(
                    SendSlot.transport == self.transport, SendSlot.taken_at <= now - longest
                )
            )
            free = wanted
            retry_at: datetime | None = None
            for limit, window in self.windows:
                used = self._count(session, now, window)
                free = min(free, limit - used)
                if used >= limit:
                    # The slot that must leave the window before one is free again.
                    oldest = session.scalar(
                        select(SendSlot.taken_at)
                        .where(SendSlot.transport == self.transport)
                        .where(SendSlot.taken_at > now - window)
                        .order_by(SendSlot.taken_at)
                        .offset(used - limit)
                        .limit(1)
                    )
                    free_at = (oldest or now) + window
                    retry_at = free_at if retry_at is None else max(retry_at, free_at)
            if free > 0:
                session.execute(
                    insert(SendSlot), [{"transport": self.transport, "taken_at": now}] * free
                )
            session.commit()
        return Grant(max(free, 0), None if free > 0 else retry_at)

    def _count(self, session: Session, now: datetime, window: timedelta) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(SendSlot)
                .where(SendSlot.transport == self.transport, SendSlot.taken_at > now - window)
            )
            or 0
        )

    def _lock(self, session: Session) -> None:
        """Hold this transport's lock until the session commits."""
        dialect = session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        # The UPDATE comes first and is what locks; the insert only makes the row once.
        locked = session.execute(
            update(RateLimitLock)
            .where(RateLimitLock.transport == self.transport)
            .values(touched_at=utcnow())
        ).rowcount
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
