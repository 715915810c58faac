"""Planning editions: one edition per digest and period, with its deliveries (fan-out).

Duplicates are prevented by the database, not by the scheduler: an edition is unique per
(digest, period), a delivery per (edition, subscriber), a post per (article, channel). A
second scheduler, a retry or a restart that plans the same thing again finds it taken.
Planning one digest holds that digest's lock (``digest_locks``) from before the previous
cutoff is read until the edition is committed, so two triggers at once (two forced runs,
each with a period of its own) make one edition: the second finds nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import ColumnElement, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Config, Digest
from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import (
    Article,
    Delivery,
    DigestLock,
    Edition,
    EditionArticle,
    EditionStatus,
    SendStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsbroadcast.errors import ConfigError, NewsBroadcastError, RenderError
from newsbroadcast.planning.audience import edition_audience
from newsbroadcast.planning.schedule import matches_tags, recency
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.views import EditionView, story_view

log = logging.getLogger("newsbroadcast.planner")

# How long a poll may take from its start (its stories' first_seen_at) to its commit, with a
# wide margin: a source's requests, each under its own deadline (20 s by default), and the
# waits for the database's write lock. Editions look this far back before the previous
# cutoff for stories stored late; a longer window costs only re-reading its few stories.
LATE_COMMIT_LOOKBACK = timedelta(minutes=15)


# --- pure decisions -------------------------------------------------------------------------


def reading_order(stories: list[Article]) -> list[Article]:
    """``stories`` (newest first) as readers get them: the dated ones newest first, then
    those without a date. An undated story's only time is when we first saw it, which says
    nothing of how new it is: it must not lead the edition (nor name its subject)."""
    return sorted(stories, key=lambda a: a.published_at is None)  # stable: keeps the rest


# --- editions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedEdition:
    edition_id: int
    digest: str
    period: str
    stories: int
    deliveries: int


def subject_renderer(
    templates: jinja2.Environment, config: Config, digest: Digest, period: str, now: datetime
) -> Callable[[list[Article]], str]:
    """What ``bulk_plan_edition`` wants as ``subject_for``: the subject of ``digest``'s
    edition for ``period`` with the given stories, rendered by its templates. Raises
    RenderError, saying where, when they fail for these stories."""

    def subject_for(articles: list[Article]) -> str:
        view = EditionView(0, digest.name, period, now, [story_view(a) for a in articles])
        try:
            return prepare_edition(templates, config, digest, view).subject
        except ConfigError as e:
            raise RenderError("; ".join(str(p) for p in e.problems)) from e
        except NewsBroadcastError:
            raise
        except Exception as e:  # the admin's template may raise whatever it likes
            raise RenderError(f"the templates fail: {type(e).__name__}: {e}") from e

    return subject_for


def edition_exists(session: Session, digest: str, period: str) -> bool:
    q = select(Edition.id).where(Edition.digest == digest, Edition.period == period)
    return session.scalar(q) is not None


def bulk_plan_edition(
    session: Session,
    digest: Digest,
    period: str,
    now: datetime,
    subject_for: Callable[[list[Article]], str],
) -> PlannedEdition | None:
    """Make the edition of ``digest`` for ``period`` with its deliveries, and commit.

    The edition gathers the articles no earlier edition holds (``edition_stories``: those
    first seen since the previous cutoff, or stored late; the newest ``max_items``). No new
    articles, or the period already taken: nothing, None.
    Whoever else plans this digest meanwhile waits for our commit, then sees our edition.
    """
    lock_digest(session, digest.name)  # before any read: the cutoff must be the newest
    if edition_exists(session, digest.name, period):
        session.commit()
        return None
    stories = edition_stories(session, digest, now)
    if not stories:
        session.commit()
        log.info("digest %s: no new articles for %s, no edition", digest.name, period)
        return None

    edition = Edition(
        digest=digest.name,
        period=period,
        status=EditionStatus.sending,
        subject=subject_for(stories),
        cutoff=now,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(edition)
            session.flush()
    except IntegrityError:
        # Another scheduler made this edition between our check and our insert.
        session.rollback()
        return None
    session.add_all(
        EditionArticle(edition_id=edition.id, article_id=a.id, position=i)
        for i, a in enumerate(stories)
    )
    deliveries = fan_out(session, edition.id, now)
    session.commit()
    log.info(
        "edition %s planned: digest=%s period=%s stories=%d deliveries=%d",
        edition.id,
        digest.name,
        period,
        len(stories),
        deliveries,
        extra={
            "edition_id": edition.id,
            "digest": digest.name,
            "period": period,
            "stories": len(stories),
            "deliveries": deliveries,
        },
    )
    return PlannedEdition(edition.id, digest.name, period, len(stories), deliveries)


def lock_digest(session: Session, name: str) -> None:
    """Hold the planning lock of digest ``name`` until the session commits or rolls back.

    The first statement is a write, on purpose: on SQLite it takes the database's write
    lock (waiting out another planner) before this transaction reads anything, so the
    reads that follow see the other planner's edition; on PostgreSQL it locks the row.
    """
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    touch = update(DigestLock).where(DigestLock.digest == name).values(touched_at=utcnow())
    if not rowcount(session.execute(touch)):
        # The digest's first edition: make the row (a concurrent maker waits on ours).
        session.execute(
            module.insert(DigestLock)
            .values(digest=name, touched_at=utcnow())
            .on_conflict_do_nothing(index_elements=["digest"])
        )
        session.execute(touch)


def edition_stories(session: Session, digest: Digest, now: datetime) -> list[Article]:
    """The stories ``digest``'s next edition holds if made at ``now``: articles first seen
    at or before ``now`` that no earlier edition of the digest holds, with one of its tags,
    the newest ``max_items``. Reads only (``preview`` shows the same).

    A story is first seen when its poll starts but stored when the poll commits, up to that
    poll's deadline later: an edition planned in between cannot see it although its cutoff
    is later. So the window reaches ``LATE_COMMIT_LOOKBACK`` back before the previous
    cutoff, and a story found there is taken unless an edition holds it or it would have
    been cut from one by ``max_items`` (it was, or would have been, older than all of a
    full edition's stories): as if it had been stored in time.
    """
    previous_cutoff = session.scalar(
        select(func.max(Edition.cutoff)).where(Edition.digest == digest.name)
    )
    q = select(Article).where(Article.first_seen_at <= now)
    if previous_cutoff is not None:
        since = previous_cutoff - LATE_COMMIT_LOOKBACK
        # An edition holding a story in the window has a cutoff after its first sighting.
        recent = (Edition.digest == digest.name, Edition.cutoff > since)
        held = (
            select(EditionArticle.article_id)
            .join(Edition, Edition.id == EditionArticle.edition_id)
            .where(EditionArticle.article_id == Article.id, *recent)
        )
        q = q.where(Article.first_seen_at > since, ~held.exists())
        cut_below = _cut_lines(session, digest, recent)
    else:
        cut_below = []
    candidates = [
        a
        for a in session.scalars(q)
        if matches_tags(a.tags, digest.tags) and not _cut(a, cut_below)
    ]
    # Which stories make the edition is decided by recency (as `_cut_lines` assumes);
    # only their order changes.
    return reading_order(sorted(candidates, key=recency, reverse=True)[: digest.max_items])


def _cut_lines(
    session: Session, digest: Digest, recent: tuple[ColumnElement[bool], ...]
) -> list[tuple[datetime, tuple[datetime, int]]]:
    """Per full recent edition of ``digest``: its cutoff and its oldest story's sort key.
    A story first seen by that cutoff and older than that key was, or would have been, cut
    by ``max_items``. A few editions of at most ``max_items`` rows each."""
    rows = session.execute(
        select(Edition.id, Edition.cutoff, Article)
        .join(EditionArticle, EditionArticle.edition_id == Edition.id)
        .join(Article, Article.id == EditionArticle.article_id)
        .where(*recent)
    ).all()
    editions: dict[int, tuple[datetime, list[tuple[datetime, int]]]] = {}
    for edition_id, cutoff, article in rows:
        editions.setdefault(edition_id, (cutoff, []))[1].append(recency(article))
    return [
        (cutoff, min(keys)) for cutoff, keys in editions.values() if len(keys) >= digest.max_items
    ]


def _cut(article: Article, cut_below: list[tuple[datetime, tuple[datetime, int]]]) -> bool:
    return any(
        article.first_seen_at <= cutoff and recency(article) < oldest
        for cutoff, oldest in cut_below
    )


def fan_out(session: Session, edition_id: int, now: datetime) -> int:
    """One queued delivery per active subscriber who wants this edition (digest, topics,
    not paused: see planning/audience.py), in one INSERT … SELECT: no Python loop, flat memory
    whatever the list's size."""
    rows = select(
        literal(edition_id),
        Subscriber.id,
        literal(SendStatus.queued.value),
        literal(0),
        literal(now, Delivery.next_attempt_at.type),
        literal(now, Delivery.created_at.type),
    ).where(Subscriber.status == SubscriberStatus.active, *edition_audience(session, edition_id))
    stmt = insert(Delivery).from_select(
        ["edition_id", "subscriber_id", "status", "attempts", "next_attempt_at", "created_at"],
        rows,
    )
    session.execute(stmt)
    # Counted afterwards: drivers disagree on rowcount for INSERT … SELECT.
    counted = select(func.count()).where(Delivery.edition_id == edition_id)
    return session.scalar(counted) or 0


# --- posts ----------------------------------------------------------------------------------
