"""The pure decisions of planning: when a digest is due (its schedule's periods, from
the clock given) and how a story counts (its time, its tags).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from newsbroadcast.articles.store import FUTURE_SLACK
from newsbroadcast.config.model import Digest
from newsbroadcast.db.models import Article


def latest_fire_time(trigger: CronTrigger, now: datetime, window: timedelta) -> datetime | None:
    """The last time ``trigger`` fired at or before ``now``, if within ``window`` of now."""
    fire = trigger.get_next_fire_time(None, now - window)
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(None, fire + timedelta(microseconds=1))
    return latest


def period_key(fire_time: datetime) -> str:
    """The (digest, period) key of a scheduled send: its fire time in UTC, to the minute."""
    return fire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def due_period(digest: Digest, now: datetime, force: bool = False) -> str | None:
    """The period a digest should have an edition for now, or None.

    A send time missed while the service was down counts only within ``catch_up``, so an
    edition never arrives hours late by surprise. ``force`` makes a period of its own, so
    a forced run sends whatever is new even when the scheduled edition already went out.
    """
    if force:
        return "manual-" + now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fire = latest_fire_time(digest.trigger(), now, digest.catch_up)
    return None if fire is None else period_key(fire)


def matches_tags(article_tags: Sequence[str], wanted: Sequence[str]) -> bool:
    """True when no tags are wanted, or the article has one of them (case-insensitive)."""
    if not wanted:
        return True
    have = {t.casefold() for t in article_tags}
    return any(t.casefold() in have for t in wanted)


def story_time(article: Article) -> datetime:
    """When a story came out, as far as we can tell: its publication date, or when we first
    saw it when it has none or one more than a day past that (a date from the future)."""
    published = article.published_at
    if published is None or published > article.first_seen_at + FUTURE_SLACK:
        return article.first_seen_at
    return published


def recency(article: Article) -> tuple[datetime, int]:
    return (article.published_at or article.first_seen_at, article.id)
