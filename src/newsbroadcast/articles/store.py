"""The article store: drafts in, one row per story, edits kept as edits.

A story is identified by its source's GUID and, across GUIDs and sources, by its canonical
URL (``articles.canonical_url`` is unique). A new story gets ``first_seen_at = now``; an
edited one keeps its ``first_seen_at``, so consumers asking "what is new since X" never
see it twice. Nothing here commits: the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsbroadcast.db.models import Article
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.sources.language import language_tag
from newsbroadcast.sources.urls import canonical_url

__all__ = [
    "FUTURE_SLACK",
    "UpsertResult",
    "content_hash",
    "upsert_articles",
]

# A publication date further ahead of now than this is a mistake (2999, 9999, a wrong time
# zone is hours, not this): the story is dated when first seen instead, with a note.
FUTURE_SLACK = timedelta(days=1)

# Column sizes in models.Article; a longer value cannot be stored as is.
_GUID_MAX = 1000
_CANONICAL_MAX = 2000
_IN_CHUNK = 500  # values per IN (…): far below SQLite's and PostgreSQL's parameter limits


def content_hash(draft: ArticleDraft) -> str:
    """SHA-256 (hex) of what a reader sees: title, URL, summary, body, image, tags.

    The URL enters as its canonical key, so a feed that stamps a fresh ``utm_campaign`` on
    every build does not count as an edit; tag order does not matter either. The date,
    author and language are left out: some feeds rewrite ``pubDate`` on every build, and
    none is an edit worth a reader's attention (hashes stored before languages were stay
    valid)."""
    payload = [
        draft.title,
        canonical_url(draft.url) or draft.url or "",
        draft.summary,
        draft.body,
        draft.image or "",
        sorted(draft.tags),
    ]
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class UpsertResult:
    new_ids: list[int] = field(default_factory=list)  # in the order the source listed them
    updated: int = 0
    unchanged: int = 0
    # What was stored otherwise than given (a date in the future), one line each.
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Incoming:
    """A draft made storable, with its keys computed once."""

    draft: ArticleDraft
    guid: str
    key: str | None  # canonical URL, None when there is none or it is too long to store
    hash: str
    # Set when the draft's date was too far ahead to keep: dated when first seen instead.
    future_note: str | None = None


def upsert_articles(
    session: Session,
    source: str,
    drafts: Iterable[ArticleDraft],
    now: datetime,
    *,
    archive: bool = False,
) -> UpsertResult:
    """Store ``drafts`` from ``source``: insert new stories, update edited ones.

    New stories are marked ``archive`` when asked (the source's first read). A date more
    than ``FUTURE_SLACK`` ahead of ``now`` is not kept: the story counts as published when
    first seen, and ``UpsertResult.notes`` says so.

    A draft is the story of an existing row when it has that row's (source, GUID) or its
    canonical URL. A story listed twice in the batch counts once (the first listing wins).
    A row owned by another source is never overwritten (two sources disagreeing would
    otherwise flip it back and forth on every poll). A row inserted meanwhile by a
    concurrent poll is treated as existing. Flushes, never commits.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    batch = _distinct(drafts, now)
    result = UpsertResult()
    if not batch:
        return result
    by_guid, by_key = _existing(session, source, batch)
    fresh: list[_Incoming] = []
    for item in batch:
        row = by_guid.get(item.guid) or (by_key.get(item.key) if item.key else None)
        if row is None:
            fresh.append(item)
        else:
            _update(session, row, item, source, now, result)
    _insert(session, source, fresh, now, result, archive)
    session.flush()
    return result


def _distinct(drafts: Iterable[ArticleDraft], now: datetime) -> list[_Incoming]:
    seen_guids: set[str] = set()
    seen_keys: set[str] = set()
    batch: list[_Incoming] = []
    for raw in drafts:
        draft = _storable(raw)
        guid = (
            draft.guid
            if len(draft.guid) <= _GUID_MAX
            else (
                "sha256:" + hashlib.sha256(draft.guid.encode("utf-8", "surrogatepass")).hexdigest()
            )
        )
        key = canonical_url(draft.url)
        if key is not None and len(key) > _CANONICAL_MAX:
            key = None  # cannot be stored; the GUID alone still dedupes
        if guid in seen_guids or (key is not None and key in seen_keys):
            continue
        seen_guids.add(guid)
        if key is not None:
            seen_keys.add(key)
        note = None
        if draft.published_at is not None and draft.published_at > now + FUTURE_SLACK:
            note = (
                f"story {guid!r}: dated {draft.published_at:%Y-%m-%d %H:%M} UTC, more than "
                "a day ahead; taken as published when first seen"
            )
            draft = replace(draft, published_at=None)
        batch.append(_Incoming(draft, guid, key, content_hash(raw), note))
    return batch


def _storable(draft: ArticleDraft) -> ArticleDraft:
    """PostgreSQL refuses NUL characters in text, and JSON Feed can carry them."""

    def clean(text: str | None) -> str | None:
        return text.replace("\x00", "") if text else text

    return ArticleDraft(
        guid=clean(draft.guid) or "",
        title=clean(draft.title) or "",
        url=clean(draft.url),
        summary=clean(draft.summary) or "",
        body=clean(draft.body) or "",
        image=clean(draft.image),
        author=clean(draft.author),
        tags=tuple(t for t in (clean(t) for t in draft.tags) if t),
        published_at=draft.published_at,
        language=language_tag(draft.language),
    )


def _existing(
    session: Session, source: str, batch: Sequence[_Incoming]
) -> tuple[dict[str, Article], dict[str, Article]]:
    by_guid: dict[str, Article] = {}
    by_key: dict[str, Article] = {}
    for guids in _chunks([i.guid for i in batch]):
        query = select(Article).where(Article.source == source, Article.guid.in_(guids))
        by_guid.update((row.guid, row) for row in session.scalars(query))
    for keys in _chunks([i.key for i in batch if i.key]):
        query = select(Article).where(Article.canonical_url.in_(keys))
        by_key.update(
            (row.canonical_url, row) for row in session.scalars(query) if row.canonical_url
        )
    return by_guid, by_key


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _update(
    session: Session,
    row: Article,
    item: _Incoming,
    source: str,
    now: datetime,
    result: UpsertResult,
) -> None:
    if row.source == source and item.draft.language and row.language != item.draft.language:
        # Not an edit a reader sees (the hash leaves it out), but what posts are sent as:
        # kept current, and filled in for stories stored before languages were.
        row.language = item.draft.language
    if row.source != source or row.content_hash == item.hash:
        result.unchanged += 1
        return
    if item.key and item.key != row.canonical_url:
        # The edit moved the story to a new address; take it only if no other row has it.
        taken = session.scalar(select(Article.id).where(Article.canonical_url == item.key))
        if taken is None:
            row.canonical_url = item.key
    draft = item.draft
    row.title = draft.title
    row.url = draft.url
    row.summary = draft.summary
    row.body = draft.body
    row.image = draft.image
    row.author = draft.author
    row.tags = list(draft.tags)
    if draft.published_at is not None:  # a feed that drops the date loses no information
        row.published_at = draft.published_at
    elif item.future_note:
        row.published_at = row.first_seen_at
        result.notes.append(item.future_note)
    row.updated_at = now
    row.content_hash = item.hash
    result.updated += 1


def _new_row(source: str, item: _Incoming, now: datetime, archive: bool) -> Article:
    draft = item.draft
    return Article(
        source=source,
        guid=item.guid,
        url=draft.url,
        canonical_url=item.key,
        title=draft.title,
        summary=draft.summary,
        body=draft.body,
        image=draft.image,
        author=draft.author,
        tags=list(draft.tags),
        language=draft.language,
        published_at=now if item.future_note else draft.published_at,
        first_seen_at=now,
        updated_at=now,
        content_hash=item.hash,
        archive=archive,
    )


def _insert(
    session: Session,
    source: str,
    fresh: list[_Incoming],
    now: datetime,
    result: UpsertResult,
    archive: bool,
) -> None:
    if not fresh:
        return
    # The usual case: nobody else is inserting these. One savepoint, one multi-row INSERT.
    rows = [_new_row(source, item, now, archive) for item in fresh]
    try:
        with session.begin_nested():
            session.add_all(rows)
            session.flush()
    except IntegrityError:
        pass  # a concurrent poll got some of them first: retry one by one below
    else:
        result.new_ids.extend(row.id for row in rows)
        result.notes.extend(item.future_note for item in fresh if item.future_note)
        return
    for item in fresh:
        row = _new_row(source, item, now, archive)
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            existing = _find(session, source, item)
            if existing is None:
                raise  # not a duplicate story: a real constraint problem
            _update(session, existing, item, source, now, result)
        else:
            result.new_ids.append(row.id)
            if item.future_note:
                result.notes.append(item.future_note)


def _find(session: Session, source: str, item: _Incoming) -> Article | None:
    row = session.scalar(select(Article).where(Article.source == source, Article.guid == item.guid))
    if row is None and item.key:
        row = session.scalar(select(Article).where(Article.canonical_url == item.key))
    return row
