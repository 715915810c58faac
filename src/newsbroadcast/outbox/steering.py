"""Steering a running edition (pause, resume, cancel) and reading its progress.

Progress is never a cursor: it is the count of an edition's delivery rows in each state,
so pausing, resuming or restarting anywhere cannot skip or repeat a subscriber.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import (
    Article,
    Delivery,
    Edition,
    EditionArticle,
    EditionStatus,
    SendStatus,
    utcnow,
)
from newsbroadcast.errors import InputError
from newsbroadcast.outbox.retention import delivery_counts

log = logging.getLogger("newsbroadcast.editions")

RATE_WINDOW = timedelta(minutes=1)  # the send rate shown is the average over this window


def _edition(session: Session, edition_id: int) -> Edition:
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise InputError(f"there is no edition {edition_id} (`newsbroadcast status` lists them)")
    return edition


def pause_edition(session: Session, edition_id: int, reason: str | None = None) -> bool:
    """Stop sending ``edition_id``; dispatchers hand back what they hold within half a
    second. Committed. False when it was not sending (already paused, done, cancelled)."""
    _edition(session, edition_id)
    changed = rowcount(
        session.execute(
            update(Edition)
            .where(Edition.id == edition_id, Edition.status == EditionStatus.sending)
            .values(status=EditionStatus.paused)
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    if changed:
        log.warning("edition %s paused%s", edition_id, f": {reason}" if reason else "")
    return bool(changed)


def resume_edition(session: Session, edition_id: int, now: datetime | None = None) -> bool:
    """Send a paused edition again, from where its delivery rows say. Committed. The
    automatic pause judges only outcomes after ``now``: the refusals that paused it do not
    pause it again at once."""
    _edition(session, edition_id)
    changed = rowcount(
        session.execute(
            update(Edition)
            .where(Edition.id == edition_id, Edition.status == EditionStatus.paused)
            .values(status=EditionStatus.sending, autopause_from=now or utcnow())
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    return bool(changed)


def cancel_edition(session: Session, edition_id: int, now: datetime) -> int:
    """Stop ``edition_id`` for good: its waiting deliveries become ``skipped``. Returns how
    many were skipped. A message already on the wire is still recorded as sent. Committed."""
    edition = _edition(session, edition_id)
    if edition.status in (EditionStatus.done, EditionStatus.cancelled):
        raise InputError(f"edition {edition_id} is already {edition.status}")
    session.execute(
        update(Edition)
        .where(Edition.id == edition_id)
        .values(status=EditionStatus.cancelled, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    skipped = rowcount(
        session.execute(
            update(Delivery)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status.in_([SendStatus.queued, SendStatus.sending]),
            )
            .values(status=SendStatus.skipped, lease_until=None, last_error="edition cancelled")
            .execution_options(synchronize_session=False)
        )
    )
    session.commit()
    return int(skipped)


@dataclass(frozen=True)
class EditionProgress:
    id: int
    digest: str
    period: str
    status: str
    counts: dict[str, int]  # by SendStatus
    rate: float  # messages sent per second over the last RATE_WINDOW

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def sent(self) -> int:
        return self.counts.get(SendStatus.sent, 0)

    @property
    def waiting(self) -> int:
        return self.counts.get(SendStatus.queued, 0) + self.counts.get(SendStatus.sending, 0)

    @property
    def failed(self) -> int:
        return self.counts.get(SendStatus.failed, 0)

    @property
    def done(self) -> int:
        return self.total - self.waiting

    @property
    def eta(self) -> timedelta | None:
        """Time left at the recent rate; None when nothing was sent lately."""
        if not self.waiting:
            return timedelta(0)
        return timedelta(seconds=self.waiting / self.rate) if self.rate > 0 else None

    def line(self) -> str:
        eta = self.eta
        eta_text = "unknown" if eta is None else format_duration(eta)
        return (
            f"#{self.id} {self.digest} {self.period} {self.status}: {self.sent}/{self.total} "
            f"sent, {self.waiting} queued, {self.failed} failed, "
            f"{self.rate:.1f}/s, ETA {eta_text}"
        )


def progress(
    session: Session, now: datetime, statuses: tuple[str, ...] = ("sending", "paused")
) -> list[EditionProgress]:
    """The progress of every edition in one of ``statuses``, oldest first."""
    editions = session.scalars(
        select(Edition).where(Edition.status.in_(statuses)).order_by(Edition.id)
    ).all()
    result = []
    for e in editions:
        counts = delivery_counts(session, e.id)  # with those folded (retention, erasure)
        recent, first = session.execute(
            select(func.count(), func.min(Delivery.sent_at)).where(
                Delivery.edition_id == e.id,
                Delivery.status == SendStatus.sent,
                Delivery.sent_at > now - RATE_WINDOW,
            )
        ).one()
        # Over the part of the window that had sends in it: a send that began 10 s ago
        # shows its real pace, not a sixth of it.
        span = RATE_WINDOW if first is None else min(RATE_WINDOW, now - first)
        rate = (recent or 0) / max(span.total_seconds(), 1.0)
        result.append(EditionProgress(e.id, e.digest, e.period, e.status, counts, rate))
    return result


def format_duration(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def edition_articles(session: Session, edition_id: int) -> list[Article]:
    """The stories an edition was planned with, in their order."""
    return list(
        session.scalars(
            select(Article)
            .join(EditionArticle, EditionArticle.article_id == Article.id)
            .where(EditionArticle.edition_id == edition_id)
            .order_by(EditionArticle.position)
        )
    )
