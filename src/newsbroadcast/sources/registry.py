"""One entry point for every kind of source: ``fetch_source`` picks the adapter by type."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import FeedSource, HtmlSource, SitemapSource, Source, SqlSource
from newsbroadcast.db.models import Article
from newsbroadcast.sources.base import FetchResult
from newsbroadcast.sources.feed import fetch_feed
from newsbroadcast.sources.html import Known, fetch_html
from newsbroadcast.sources.sitemap import fetch_sitemap
from newsbroadcast.sources.sql import fetch_sql

__all__ = ["fetch_source", "known_guids"]


def fetch_source(
    source: Source,
    base_dir: Path,
    etag: str | None,
    last_modified: str | None,
    cursor: str | None,
    client: httpx.Client | None,
    *,
    user_agent: str,
    known: Known = lambda guids: set(),
) -> FetchResult:
    """Read ``source`` once. Raises ``SourceError`` when nothing could be read."""
    if isinstance(source, FeedSource):
        return fetch_feed(source, base_dir, etag, last_modified, client, user_agent=user_agent)
    if isinstance(source, HtmlSource):
        return fetch_html(source, etag, last_modified, client, user_agent=user_agent, known=known)
    if isinstance(source, SitemapSource):
        return fetch_sitemap(source, etag, last_modified, client, user_agent=user_agent)
    if isinstance(source, SqlSource):
        return fetch_sql(source, base_dir, cursor)
    raise TypeError(f"no adapter for source type {type(source).__name__}")


def known_guids(sessions: sessionmaker[Session], source: str) -> Known:
    """A ``Known`` answered from the store: which of these GUIDs ``source`` already has."""

    def known(guids: list[str]) -> set[str]:
        found: set[str] = set()
        with sessions() as session:
            for start in range(0, len(guids), 500):
                query = select(Article.guid).where(
                    Article.source == source, Article.guid.in_(guids[start : start + 500])
                )
                found.update(session.scalars(query))
        return found

    return known
