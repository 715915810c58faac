"""What every source adapter hands to the article store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ArticleDraft:
    """One article as a source saw it. Text fields are plain strings as published
    (``summary`` and ``body`` may hold HTML: it is sanitised at render time)."""

    guid: str
    title: str
    url: str | None = None
    summary: str = ""
    body: str = ""
    image: str | None = None
    author: str | None = None
    tags: tuple[str, ...] = ()
    published_at: datetime | None = None  # aware UTC, or None when the source gives no date
    # The story's language as its source says (BCP 47 or near: 'fr', 'en-US', 'rw_RW');
    # the store keeps it normalised, None when it is not a language tag.
    language: str | None = None


@dataclass(frozen=True)
class FetchResult:
    """A poll's outcome. ``not_modified`` means the server answered 304: nothing to do."""

    drafts: list[ArticleDraft] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    # Entries skipped as unusable (no title and no link, …), each with where it was.
    skipped: list[str] = field(default_factory=list)
    # A source read incrementally (sql) gives the position to store with these drafts.
    cursor: str | None = None
    # True when the poll stopped before the end (a backlog read over several polls).
    more: bool = False
