"""Articles handed to us rather than polled: the push API and ``articles add --url``.

Both store through ``store_pushed``, which keeps the pushing source's health in
``source_state`` like a polled source's, so ``status`` shows them too.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.articles.ingest import source_state
from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.db.models import Article
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.sources.http import Fetcher
from newsbroadcast.sources.pagemeta import page_metadata, parse_html
from newsbroadcast.sources.urls import canonical_url

__all__ = ["Stored", "draft_from_page", "hash_token", "store_pushed", "token_matches"]


@dataclass(frozen=True)
class Stored:
    created: bool  # False: the guid (or the URL) was already there; an edit may have been kept
    updated: bool


# What a pushed draft may leave out, and so keep from the stored story.
_OPTIONAL = ("url", "summary", "body", "image", "author", "tags", "published_at")


def store_pushed(
    sessions: sessionmaker[Session],
    source: str,
    drafts: list[ArticleDraft],
    now: datetime,
    *,
    sent: Collection[str] | None = None,
) -> Stored:
    """Store ``drafts`` under ``source`` and record the source's health, in one commit.

    ``sent``: the fields the pusher gave. A repeat changes only those: a field it left out
    keeps the stored value (read in the same transaction as the write).
    """
    with sessions.begin() as session:
        if sent is not None:
            drafts = [_with_stored(session, source, d, sent) for d in drafts]
        result = upsert_articles(session, source, drafts, now)
        state = source_state(session, source)
        state.last_polled_at = now
        state.last_success_at = now
        state.last_error = None
        state.items_seen = (state.items_seen or 0) + len(drafts)
    return Stored(created=bool(result.new_ids), updated=bool(result.updated))


def _with_stored(
    session: Session, source: str, draft: ArticleDraft, sent: Collection[str]
) -> ArticleDraft:
    left_out = [name for name in _OPTIONAL if name not in sent]
    if not left_out:
        return draft
    row = session.scalar(
        select(Article).where(Article.source == source, Article.guid == draft.guid)
    )
    key = canonical_url(draft.url)
    if row is None and key is not None:
        row = session.scalar(select(Article).where(Article.canonical_url == key))
    if row is None or row.source != source:
        return draft  # new, or another source's story (which is never overwritten)
    kept = {name: getattr(row, name) for name in left_out}
    if "tags" in kept:
        kept["tags"] = tuple(kept["tags"] or ())
    return replace(draft, **kept)


def record_failure(sessions: sessionmaker[Session], source: str, now: datetime, error: str) -> None:
    with sessions.begin() as session:
        state = source_state(session, source)
        state.last_polled_at = now
        state.last_error = error


def draft_from_page(
    url: str, client: httpx.Client | None, user_agent: str, timeout: float = 20
) -> ArticleDraft:
    """An article from its web page's own metadata (JSON-LD, og:, twitter:, <title>).

    A person asked for this one page, so robots.txt is not consulted (it governs crawlers).
    Raises ``SourceError`` when the page cannot be read or has no title.
    """
    with Fetcher("articles add", client, user_agent, timeout) as fetcher:
        page = fetcher.get(url)
    meta = page_metadata(parse_html(page.data, page.charset), page.url)
    if not meta.title:
        raise SourceError("articles add", f"{page.url}: the page has no title to use")
    address = meta.canonical_url or page.url
    return ArticleDraft(
        guid=address,
        title=meta.title,
        url=address,
        summary=html.escape(meta.description or "", quote=False),
        image=meta.image,
        author=meta.author,
        tags=meta.tags,
        published_at=meta.published_at,
        language=meta.language,
    )


def hash_token(token: str) -> str:
    """How a push token is written in the config: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, hashes: Iterable[str]) -> bool:
    digest = hash_token(token)
    # Every hash is compared, without stopping early, so timing says nothing about which.
    matched = False
    for expected in hashes:
        matched |= hmac.compare_digest(digest, expected)
    return matched
