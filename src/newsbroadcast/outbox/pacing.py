"""A channel's pace: at most one post per ``every``, only between two local times.

Twelve stories arriving at once must not become twelve posts in a minute. The pace is kept
in the database (``channel_state.next_post_at``) and taken with one conditional UPDATE, so
two dispatchers, or a restarted one, never post on a channel closer together than the pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from newsbroadcast.config.model import ChannelBase, Pace
from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import ChannelState, Post, SendStatus


def _clock_time(text: str) -> time:
    hours, minutes = (int(x) for x in text.split(":"))
    return time.max if hours == 24 else time(hours, minutes)


def in_window(pace: Pace, now: datetime) -> bool:
    """True when ``now`` falls between the pace's local start and end times (always, when it
    has none). A window whose end is before its start spans midnight."""
    if not pace.between:
        return True
    start, end = (_clock_time(t) for t in pace.between.split("-"))
    local = now.astimezone(ZoneInfo(pace.timezone)).time().replace(tzinfo=None)
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def take_slot(session: Session, channel: str, pace: Pace, now: datetime) -> bool:
    """Take the channel's next posting slot if it is free now and a post waits for it.

    Does not commit: the caller claims the post in the same transaction, so the slot and the
    claim are committed together (or not at all). While the UPDATE holds the channel's row,
    a second dispatcher waits, then finds the slot gone.
    """
    if not in_window(pace, now):
        return False
    waiting = exists().where(
        Post.channel == channel,
        or_(
            and_(Post.status == SendStatus.queued, Post.next_attempt_at <= now),
            and_(Post.status == SendStatus.sending, Post.lease_until < now),
        ),
    )
    taken = session.execute(
        update(ChannelState)
        .where(
            ChannelState.name == channel,
            or_(ChannelState.next_post_at.is_(None), ChannelState.next_post_at <= now),
            waiting,
        )
        .values(next_post_at=now + pace.every)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(taken))


# -- reading the pace (for `status`): nothing below takes a slot or writes -----------------


def window_opens(pace: Pace, at: datetime) -> datetime:
    """``at`` when it is within the pace's hours, else the moment they next begin (in UTC)."""
    if in_window(pace, at) or not pace.between:
        return at
    zone = ZoneInfo(pace.timezone)
    local = at.astimezone(zone)
    start = _clock_time(pace.between.split("-")[0])
    opens = datetime.combine(local.date(), start, tzinfo=zone)
    if opens <= local:
        # Wall-clock arithmetic (zoneinfo): the start time of the next local day, DST or not.
        opens = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=zone)
    return opens.astimezone(UTC)


def next_post_time(
    pace: Pace | None, slot: datetime | None, due: datetime, now: datetime
) -> datetime:
    """When a channel's next post may start: not before its earliest post is due (``due``,
    later after a retry's backoff), nor before the pace's next slot (``slot``), and within
    the pace's hours. ``now`` when all of that holds already. The rule ``take_slot`` keeps."""
    at = max(due, now)
    if pace is not None:
        at = window_opens(pace, max(at, slot or at))
    return at


def describe(pace: Pace) -> str:
    """'1 per 30 min, 07:00-21:00 Africa/Kigali': the pace as a person says it."""
    seconds = int(pace.every.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{seconds} s" if seconds else "")
    every = " ".join(p for p in parts if p)
    said = f"1 per {every}" if every else "no minimum interval"
    return f"{said}, {pace.between} {pace.timezone}" if pace.between else said


@dataclass(frozen=True)
class ChannelOutlook:
    """One channel's waiting posts and when the next may go out (None: none waits)."""

    channel: str
    queued: int
    sending: int
    next_at: datetime | None
    pace: Pace | None

    def line(self, now: datetime) -> str:
        counts = f"{self.queued} queued" + (f", {self.sending} sending" if self.sending else "")
        if self.next_at is None:
            shown = f"{counts}, nothing waits" if self.sending else "nothing queued"
        elif self.next_at <= now:
            shown = f"{counts}, next post now"
        else:
            shown = f"{counts}, next post at {self.next_at:%Y-%m-%d %H:%M} UTC"
        return f"{self.channel}: {shown}" + (
            f" (pacing {describe(self.pace)})" if self.pace else ""
        )


def outlook(
    session: Session, channels: Sequence[ChannelBase], now: datetime
) -> list[ChannelOutlook]:
    """Each configured channel's queue and next post time, read from the database as every
    dispatcher sees it (the pace's slot is shared by all of them)."""
    waiting = [SendStatus.queued, SendStatus.sending]
    counts = {
        (channel, str(status)): n
        for channel, status, n in session.execute(
            select(Post.channel, Post.status, func.count())
            .where(Post.status.in_(waiting))
            .group_by(Post.channel, Post.status)
        ).tuples()
    }
    # A queued post is due at its next attempt; one being sent comes back when its lease
    # ends (its dispatcher died), which is when `claim` takes it again.
    due: dict[str, datetime] = {}
    for column, status in (
        (Post.next_attempt_at, SendStatus.queued),
        (Post.lease_until, SendStatus.sending),
    ):
        query = select(Post.channel, func.min(column)).where(Post.status == status)
        for channel, at in session.execute(query.group_by(Post.channel)).tuples():
            if at is not None:
                due[channel] = min(due.get(channel, at), at)
    slots = dict(
        session.execute(select(ChannelState.name, ChannelState.next_post_at)).tuples().all()
    )
    found = []
    for entry in channels:
        first = due.get(entry.name)
        found.append(
            ChannelOutlook(
                entry.name,
                counts.get((entry.name, SendStatus.queued.value), 0),
                counts.get((entry.name, SendStatus.sending.value), 0),
                None
                if first is None
                else next_post_time(entry.pace, slots.get(entry.name), first, now),
                entry.pace,
            )
        )
    return found
