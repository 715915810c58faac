"""What the renderer is handed: an edition and its stories as plain values.

``story_view`` and ``edition_view`` build them from stored rows (read by the caller), so
the renderer, the previews and the web archive all see an edition the same way. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rows only read, never queried: render/ does no I/O
    from newsbroadcast.db.models import Article, Edition


@dataclass(frozen=True)
class StoryView:
    """One story of an edition as the planner hands it over; ``summary`` may hold HTML."""

    title: str
    url: str | None
    summary: str
    published_at: datetime | None
    image: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditionView:
    id: int
    digest: str
    period: str
    created_at: datetime
    stories: list[StoryView]


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    email: str
    name: str | None


def story_view(article: Article) -> StoryView:
    return StoryView(
        title=article.title,
        url=article.url,
        summary=article.summary,
        published_at=article.published_at,
        image=article.image,
        author=article.author,
        tags=tuple(article.tags or ()),
    )


def edition_view(edition: Edition, articles: Sequence[Article]) -> EditionView:
    """A stored edition with its stories (``articles``, in order), as the renderer wants
    it."""
    return EditionView(
        id=edition.id,
        digest=edition.digest,
        period=edition.period,
        created_at=edition.created_at,
        stories=[story_view(a) for a in articles],
    )
