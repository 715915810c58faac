"""The posts to make: which articles each channel announces and with which text, one post
row per (article, channel) (UNIQUE: planning twice posts once), and the channels' own rows.

The text is rendered here, through render/social.py, once: every retry sends the same.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import jinja2
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsbroadcast.config.model import ChannelBase
from newsbroadcast.db.engine import rowcount
from newsbroadcast.db.models import Article, ChannelState, Post, SendStatus
from newsbroadcast.errors import PostTooLong, RenderError
from newsbroadcast.planning.schedule import matches_tags, recency, story_time
from newsbroadcast.render.social import DEFAULT_MAX_HASHTAGS, PostStory, render_post
from newsbroadcast.render.templates import html_to_text

log = logging.getLogger("newsbroadcast.planner")


class LengthRule(Protocol):
    """A network's length rule (every channel has one): a post fits when
    ``measure(text) <= limit``."""

    @property
    def limit(self) -> int: ...

    def measure(self, text: str) -> int: ...


@dataclass(frozen=True)
class FailedPost:
    """A story whose post cannot fit its channel: stored ``failed`` with ``error``, for good."""

    channel: str
    article_id: int
    error: str


@dataclass
class PostsPlanned:
    """What one planning of posts did: ``count`` posts queued, the ``failed_posts`` this
    planning stored, and ``broken``: channel → why, for each channel whose template fails
    (its stories get no post row and wait for the fix)."""

    count: int = 0
    failed_posts: list[FailedPost] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)


def post_story(article: Article, max_hashtags: int = DEFAULT_MAX_HASHTAGS) -> PostStory:
    """What a social template sees of ``article``, with at most ``max_hashtags``."""
    return PostStory(
        title=article.title,
        url=article.url,
        summary=html_to_text(article.summary),
        published_at=article.published_at,
        author=article.author,
        tags=tuple(article.tags or ()),
        max_hashtags=max_hashtags,
        language=article.language,
    )


def plan_posts(
    session: Session,
    channels: Sequence[ChannelBase],
    templates: jinja2.Environment,
    rules: Mapping[str, LengthRule],
    now: datetime,
) -> PostsPlanned:
    """Queue one post per channel for each article it should announce, its text fitted to
    the channel's length rule (``rules``, by channel name). A story whose post cannot fit
    gets a ``failed`` post with the reason; a channel whose template fails plans nothing
    for the stories it fails on. Commits."""
    planned = PostsPlanned()
    added = dict(session.execute(select(ChannelState.name, ChannelState.added_at)).tuples().all())
    for channel in channels:
        try:
            template = templates.get_template(f"social/{channel.template}")
        except jinja2.TemplateError as e:
            planned.broken[channel.name] = _template_problem(f"social/{channel.template}", e)
            continue
        rule = rules[channel.name]
        left_out = 0
        for article in articles_to_announce(session, channel, added[channel.name], now):
            try:
                story = post_story(article, channel.max_hashtags)
                text = render_post(template, story, rule.limit, rule.measure)
            except PostTooLong as e:
                # Nothing this story could say fits: its post fails alone, for good.
                if insert_post(session, article.id, channel.name, "", now, error=str(e)):
                    planned.failed_posts.append(FailedPost(channel.name, article.id, str(e)))
                continue
            except RenderError as e:
                # The template's fault, not the story's: no post row, so the story is
                # planned once the template is fixed.
                left_out += 1
                planned.broken.setdefault(channel.name, f"article {article.id}: {e}")
                continue
            planned.count += insert_post(session, article.id, channel.name, text, now)
        if left_out > 1:
            planned.broken[channel.name] += f" ({left_out} stories wait for a fix)"
    session.commit()
    return planned


def _template_problem(name: str, error: jinja2.TemplateError) -> str:
    line = getattr(error, "lineno", None)
    return f"{name}:{line}: {error}" if line else f"{name}: {error}"


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
