"""The article store on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select

from newsbroadcast.articles import store
from newsbroadcast.articles.store import UpsertResult, upsert_articles
from newsbroadcast.config.model import FeedSource
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.sources.feed import fetch_feed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
NOW = datetime(2025, 5, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=6)


def drafts(file: str) -> list[ArticleDraft]:
    source = FeedSource.model_validate({"type": "feed", "name": "newsroom", "url": file})
    return fetch_feed(source, FIXTURES, None, None).drafts


def upsert(
    engine: Engine, items: list[ArticleDraft], now: datetime = NOW, source: str = "newsroom"
) -> UpsertResult:
    with sessions(engine).begin() as session:
        return upsert_articles(session, source, items, now)


def rows(engine: Engine) -> list[Article]:
    with sessions(engine)() as session:
        return list(session.scalars(select(Article).order_by(Article.id)))


def test_a_story_listed_twice_is_stored_once(engine: Engine) -> None:
    result = upsert(engine, drafts("rss_newsroom.xml"))
    assert len(result.new_ids) == 7  # 8 entries, one of them a repeat
    stored = rows(engine)
    assert [r.id for r in stored] == result.new_ids
    assert sum(r.guid == "wiu-0001" for r in stored) == 1
    first = next(r for r in stored if r.guid == "wiu-0001")
    # The first listing wins; all fields arrive intact.
    assert first.body and first.author == "Claire Mukamana"
    assert first.tags == ["rwanda", "peacekeeping"]
    assert first.canonical_url == "https://newsroom.example.org/news/rwanda-all-woman-unit"
    assert first.first_seen_at == NOW and first.updated_at == NOW
    assert first.published_at == datetime(2018, 7, 10, 7, 0, tzinfo=UTC)
    multilingual = next(r for r in stored if r.guid == "wiu-0006")
    assert "女性维和人员" in multilingual.title and "🇷🇼" in multilingual.title


def test_reingesting_an_unchanged_feed_changes_nothing(engine: Engine) -> None:
    upsert(engine, drafts("rss_newsroom.xml"))
    before = {(r.id, r.updated_at, r.content_hash) for r in rows(engine)}
    again = upsert(engine, drafts("rss_newsroom.xml"), LATER)
    assert again == UpsertResult(new_ids=[], updated=0, unchanged=7)
    assert {(r.id, r.updated_at, r.content_hash) for r in rows(engine)} == before


def test_an_edited_story_updates_its_row_and_is_never_new_again(engine: Engine) -> None:
    upsert(engine, drafts("rss_newsroom.xml"))
    original = next(r for r in rows(engine) if r.guid == "wiu-0001")
    result = upsert(engine, drafts("rss_newsroom_edited.xml"), LATER)
    assert result.new_ids == [] and result.updated == 1 and result.unchanged == 6
    edited = next(r for r in rows(engine) if r.guid == "wiu-0001")
    assert edited.id == original.id
    assert edited.title == "Rwanda sends all-woman police unit to South Sudan"
    assert "officials confirmed" in edited.summary
    assert edited.first_seen_at == NOW  # so "new since" never returns it twice
    assert edited.updated_at == LATER
    assert edited.content_hash != original.content_hash
    assert len(rows(engine)) == 7


def test_same_canonical_url_with_another_guid_is_the_same_story(engine: Engine) -> None:
    story = ArticleDraft(
        guid="cms-1",
        title="Kyrgyz border guards train",
        url="https://newsroom.example.org/news/kyrgyz?utm_source=rss",
    )
    (first_id,) = upsert(engine, [story]).new_ids
    # The CMS was migrated: new GUID, link spelled differently, text edited.
    moved = ArticleDraft(
        guid="https://newsroom.example.org/news/kyrgyz/",
        title="Kyrgyz border guards train in winter",
        url="HTTP://newsroom.example.org/news/kyrgyz/#top",
    )
    result = upsert(engine, [moved], LATER)
    assert result == UpsertResult(new_ids=[], updated=1, unchanged=0)
    (row,) = rows(engine)
    assert row.id == first_id and row.guid == "cms-1"
    assert row.title == "Kyrgyz border guards train in winter"
    assert row.first_seen_at == NOW


def test_one_story_under_two_guids_in_one_batch_is_stored_once(engine: Engine) -> None:
    a = ArticleDraft(guid="a", title="One story", url="https://newsroom.example.org/s?fbclid=1")
    b = ArticleDraft(guid="b", title="One story", url="https://newsroom.example.org/s")
    assert len(upsert(engine, [a, b]).new_ids) == 1
    assert len(rows(engine)) == 1


def test_another_sources_row_is_not_overwritten(engine: Engine) -> None:
    url = "https://newsroom.example.org/news/shared"
    upsert(engine, [ArticleDraft(guid="feed-1", title="From the feed", url=url)])
    result = upsert(
        engine,
        [ArticleDraft(guid="page-1", title="From the page", url=url)],
        LATER,
        source="listing",
    )
    assert result == UpsertResult(new_ids=[], updated=0, unchanged=1)
    (row,) = rows(engine)
    assert (row.source, row.title) == ("newsroom", "From the feed")


def test_a_concurrent_insert_of_the_same_story_counts_as_existing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    upsert(engine, drafts("rss_newsroom.xml"))
    # As if another poller committed these rows just after this one looked for them.
    monkeypatch.setattr(store, "_existing", lambda *args: ({}, {}))
    extra = ArticleDraft(
        guid="wiu-0100", title="A new story", url="https://newsroom.example.org/news/new"
    )
    result = upsert(engine, [*drafts("rss_newsroom.xml"), extra], LATER)
    assert result.unchanged == 7 and result.updated == 0
    assert len(result.new_ids) == 1
    assert len(rows(engine)) == 8


def test_values_the_columns_cannot_hold_as_is(engine: Engine) -> None:
    long_guid = "urn:x:" + "g" * 1500
    long_url = "https://newsroom.example.org/" + "p" * 2500
    items = [
        ArticleDraft(guid=long_guid, title="Long GUID", url=long_url),
        # PostgreSQL refuses NUL characters in text; JSON Feed can carry them.
        ArticleDraft(
            guid="nul\x00",
            title="Tab\x00le",
            summary="a\x00b",
            url="https://newsroom.example.org/nul",
            tags=("x\x00",),
        ),
        ArticleDraft(
            guid="dated",
            title="Dated",
            url="https://newsroom.example.org/n",
            published_at=datetime(2025, 1, 1, 12, 0, tzinfo=UTC),
        ),
    ]
    assert len(upsert(engine, items).new_ids) == 3
    assert upsert(engine, items, LATER).unchanged == 3
    stored = {r.title: r for r in rows(engine)}
    assert len(stored["Long GUID"].guid) <= 1000
    assert stored["Long GUID"].canonical_url is None and stored["Long GUID"].url == long_url
    assert stored["Table"].summary == "ab" and stored["Table"].tags == ["x"]


def test_a_big_batch_costs_a_few_queries_not_one_per_story(engine: Engine) -> None:
    many = [
        ArticleDraft(guid=f"g{i}", title=f"Story {i}", url=f"https://newsroom.example.org/s/{i}")
        for i in range(1200)
    ]
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        result = upsert(engine, many)
        inserted = len(statements)
        statements.clear()
        again = upsert(engine, many, LATER)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(result.new_ids) == 1200 and result.new_ids == sorted(result.new_ids)
    assert again.unchanged == 1200
    # Lookups go 500 keys at a time: 3 by GUID + 3 by URL; nothing to write the second time.
    assert len(statements) == 6
    if engine.dialect.name == "postgresql":
        # Multi-row INSERTs. (On SQLite, SQLAlchemy sends one INSERT per row to match the
        # RETURNING ids to rows; SQLite runs in-process, so those are not round trips.)
        assert inserted < 30
    with sessions(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == 1200


def test_naive_now_is_refused(engine: Engine) -> None:
    with sessions(engine)() as session, pytest.raises(ValueError, match="timezone"):
        upsert_articles(session, "newsroom", [], datetime(2025, 1, 1))


def test_a_date_far_in_the_future_counts_as_first_seen(engine: Engine) -> None:
    ahead = [
        ArticleDraft(
            guid=f"g{year}", title=f"Dated {year}", published_at=datetime(year, 1, 1, tzinfo=UTC)
        )
        for year in (2999, 9999)
    ]
    soon = ArticleDraft(guid="soon", title="An hour ahead", published_at=NOW + timedelta(hours=1))
    result = upsert(engine, [*ahead, soon])
    assert len(result.new_ids) == 3
    got = {a.guid: a.published_at for a in rows(engine)}
    assert got == {"g2999": NOW, "g9999": NOW, "soon": NOW + timedelta(hours=1)}
    assert result.notes == [
        "story 'g2999': dated 2999-01-01 00:00 UTC, more than a day ahead; "
        "taken as published when first seen",
        "story 'g9999': dated 9999-01-01 00:00 UTC, more than a day ahead; "
        "taken as published when first seen",
    ]
