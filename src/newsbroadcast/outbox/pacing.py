"""A channel's pace: at most one post per ``every``, only between two local times.

Twelve stories arriving at once must not become twelve posts in a minute. The pace is kept
in the database (``channel_state.next_post_at``) and taken with one conditional UPDATE, so
two dispatchers, or a restarted one, never post on a channel closer together than the pace.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, or_, update
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Pace
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
