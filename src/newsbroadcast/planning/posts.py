"""The posts to make: which articles each channel announces, one post row per
(article, channel) (UNIQUE: planning twice posts once), and the channels' own rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsbroadcast.config.model import ChannelBase
from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import Article, ChannelState, Post, SendStatus
from newsbroadcast.planning.schedule import matches_tags, recency, story_time

log = logging.getLogger("newsbroadcast.planner")


def register_channels(session: Session, names: Sequence[str], now: datetime) -> None:
    """Remember when each channel was first configured (articles older than that are not
    announced on it: adding a channel to a site with 500 old stories must not flood)."""
    known = set(session.scalars(select(ChannelState.name)))
    session.add_all(ChannelState(name=n, added_at=now) for n in names if n not in known)
    session.commit()


def articles_to_announce(
    session: Session, channel: ChannelBase, added_at: datetime, now: datetime
) -> list[Article]:
    """Articles that should get a post on ``channel`` and have none yet, oldest first.

    Those first seen since the channel was added, not from a source's archive (what its
    first read found: see ``Article.archive``) and from within ``max_age`` (by their
    ``story_time``), plus the newest ``backfill`` articles whatever their age or origin.
    """
    posted = select(Post.article_id).where(Post.channel == channel.name)
    fresh_since = now - channel.max_age
    q = select(Article).where(
        Article.first_seen_at >= added_at,
        Article.archive.is_(False),
        Article.id.not_in(posted),
    )
    chosen = {
        a.id: a
        for a in session.scalars(q)
        if story_time(a) >= fresh_since and matches_tags(a.tags, channel.tags)
    }
    if channel.backfill:
        newest_first = select(Article).order_by(
            func.coalesce(Article.published_at, Article.first_seen_at).desc(), Article.id.desc()
        )
        newest: list[Article] = []
        for a in session.scalars(newest_first.execution_options(yield_per=100)):
            if matches_tags(a.tags, channel.tags):
                newest.append(a)
                if len(newest) == channel.backfill:
                    break
        already = set(session.scalars(posted))
        chosen.update({a.id: a for a in newest if a.id not in already})
    return sorted(chosen.values(), key=recency)


def insert_post(
    session: Session,
    article_id: int,
    channel: str,
    text: str,
    now: datetime,
    error: str | None = None,
) -> bool:
    """Queue one post with its final text; False when (article, channel) already has one.
    With ``error`` (no text could be made) the post is stored ``failed`` with that reason
    instead: it is never sent, and not planned again."""
    values = {
        "article_id": article_id,
        "channel": channel,
        "text": text,
        "status": (SendStatus.failed if error else SendStatus.queued).value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "last_error": error,
    }
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = (
        module.insert(Post)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["article_id", "channel"])
    )
    return bool(rowcount(session.execute(stmt)))
