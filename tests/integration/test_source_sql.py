"""SQL sources: another application's database (SQLite file, PostgreSQL schema) read
incrementally and strictly read-only into our store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from newsbroadcast.articles.ingest import poll_all, poll_source
from newsbroadcast.config.model import Config
from newsbroadcast.db.engine import make_engine, sessions, upgrade
from newsbroadcast.db.models import Article, SourceState
from newsbroadcast.sources.sql import readonly_engine
from tests.site import site_config

NOW = datetime(2025, 5, 23, 12, 0, tzinfo=UTC)

foreign_meta = MetaData()
# The other application's table, named and shaped its own way.
cms_news = Table(
    "cms_news",
    foreign_meta,
    Column("news_id", Integer, primary_key=True),
    Column("headline", Text),
    Column("permalink", Text),
    Column("teaser", Text),
    Column("posted", DateTime),  # naive, in the CMS's local time
    Column("keywords", Text),
    Column("status", Text),
)
ROWS: list[dict[str, Any]] = [
    {
        "news_id": 1,
        "headline": "Women peacekeepers join UN mission in South Sudan",
        "permalink": "https://newsroom.example.org/news/peacekeepers",
        "teaser": "Forty officers arrived in Juba.",
        "posted": datetime(2025, 5, 23, 9, 0),
        "keywords": "Peacekeeping, South Sudan",
        "status": "published",
    },
    {
        "news_id": 2,
        "headline": "  ",
        "permalink": "https://newsroom.example.org/news/untitled",
        "teaser": "A draft without a headline.",
        "posted": datetime(2025, 5, 22, 9, 0),
        "keywords": None,
        "status": "published",
    },
    {
        "news_id": 3,
        "headline": "Police academy graduates its first mixed class",
        "permalink": "ftp://newsroom.example.org/academy",
        "teaser": "",
        "posted": datetime(2025, 5, 22, 10, 0),
        "keywords": None,
        "status": "published",
    },
    {
        "news_id": 4,
        "headline": "Mentoring network reaches 1,000 members",
        "permalink": "https://newsroom.example.org/news/mentoring",
        "teaser": "Senior officers mentor younger colleagues.",
        "posted": None,
        "keywords": '["Mentoring", "Careers"]',
        "status": "published",
    },
    {
        "news_id": 5,
        "headline": "Unpublished draft",
        "permalink": "https://newsroom.example.org/news/draft",
        "teaser": "",
        "posted": datetime(2025, 5, 23, 11, 0),
        "keywords": None,
        "status": "draft",
    },
]


@pytest.fixture
def foreign(database_url: str) -> Iterator[str]:
    """The other application's database (SQLite file or PostgreSQL schema), with a table
    and a view of its published rows; yields its URL."""
    eng = create_engine(database_url)
    foreign_meta.create_all(eng)
    with eng.begin() as conn:
        conn.execute(insert(cms_news), ROWS)
        conn.execute(
            text("CREATE VIEW published_news AS SELECT * FROM cms_news WHERE status = 'published'")
        )
    eng.dispose()
    yield database_url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    """Our own store, a separate SQLite file: the foreign database is only ever read."""
    eng = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()


def cms_source(**source: Any) -> dict[str, Any]:
    return {
        "type": "sql",
        "name": "cms",
        "table": "published_news",
        "columns": {
            "guid": "news_id",
            "title": "headline",
            "url": "permalink",
            "summary": "teaser",
            "published_at": "posted",
            "tags": "keywords",
        },
        "cursor": "news_id",
        "timezone": "Africa/Kigali",
        **source,
    }


def make_config(tmp_path: Path, **source: Any) -> Config:
    return site_config(tmp_path, digests=None, sources=[cms_source(**source)])


def articles(store: Engine) -> dict[str, Article]:
    with sessions(store)() as s:
        return {a.guid: a for a in s.scalars(select(Article))}


def test_rows_become_articles_and_bad_rows_are_reported(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    config = make_config(tmp_path, url=foreign)
    report = poll_source(sessions(store), config, config.sources[0], NOW)

    assert report.error is None
    got = articles(store)
    assert sorted(got) == ["1", "4"]  # 2 and 3 are bad, 5 is not in the view
    first = got["1"]
    assert first.title == "Women peacekeepers join UN mission in South Sudan"
    assert first.url == "https://newsroom.example.org/news/peacekeepers"
    assert first.published_at == datetime(2025, 5, 23, 7, 0, tzinfo=UTC)  # 09:00 in Kigali
    assert first.tags == ["Peacekeeping", "South Sudan"]
    assert got["4"].tags == ["Mentoring", "Careers"] and got["4"].published_at is None
    assert report.skipped == [
        "row news_id=2: empty 'headline' (the title column)",
        "row news_id=3: 'permalink' is not an http(s) URL: 'ftp://newsroom.example.org/academy'",
    ]
    with sessions(store)() as s:
        state = s.get(SourceState, "cms")
        assert state is not None and state.last_success_at == NOW and state.items_seen == 2
        assert state.cursor == '{"int": 4}'
        assert "row news_id=2" in (state.last_problems or "")


def test_only_rows_past_the_cursor_are_read(foreign: str, store: Engine, tmp_path: Path) -> None:
    config = make_config(tmp_path, url=foreign, batch_size=2)
    poll_source(sessions(store), config, config.sources[0], NOW)

    again = poll_source(sessions(store), config, config.sources[0], NOW)
    # The rows just behind the cursor are read again (lookback_rows) and found unchanged.
    assert again.error is None and (again.new, again.updated, again.unchanged) == (0, 0, 2)
    assert again.skipped == []  # bad rows are reported once, not on every poll

    eng = create_engine(foreign)
    with eng.begin() as conn:
        conn.execute(
            insert(cms_news),
            [
                {
                    "news_id": 6,
                    "headline": "Conference opens in Kigali",
                    "permalink": "https://newsroom.example.org/news/conference",
                    "posted": datetime(2025, 5, 23, 11, 30),
                    "status": "published",
                }
            ],
        )
    eng.dispose()
    third = poll_source(sessions(store), config, config.sources[0], NOW)
    assert third.new == 1
    assert sorted(articles(store)) == ["1", "4", "6"]


def test_a_timestamp_cursor(foreign: str, store: Engine, tmp_path: Path) -> None:
    config = make_config(tmp_path, url=foreign, table="cms_news", cursor="posted")
    first = poll_source(sessions(store), config, config.sources[0], NOW)
    assert first.error is None
    # Rows with a NULL cursor cannot be ordered, and say so; the draft (5) has a time.
    assert sorted(articles(store)) == ["1", "5"]
    unplaced = "row news_id=4: no 'posted' (the cursor column), so it is never read"
    assert unplaced in first.skipped
    with sessions(store)() as s:
        state = s.get(SourceState, "cms")
        assert state is not None and state.cursor is not None
        assert "2025-05-23 11:00:00" in state.cursor  # the cell as the database wrote it
    again = poll_source(sessions(store), config, config.sources[0], NOW)
    assert (again.new, again.skipped) == (0, [unplaced])  # until it has one


def test_the_connection_refuses_writes(foreign: str, tmp_path: Path) -> None:
    engine = readonly_engine(foreign, tmp_path)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(cms_news)).scalar() == 5
        with pytest.raises(DBAPIError, match="(?i)read.only|readonly"), engine.begin() as conn:
            conn.execute(insert(cms_news), [{"news_id": 99, "headline": "written by us"}])
        with pytest.raises(DBAPIError, match="(?i)read.only|readonly"), engine.begin() as conn:
            conn.execute(text("DELETE FROM cms_news"))
    finally:
        engine.dispose()
    check = create_engine(foreign)
    with check.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cms_news)).scalar() == 5
    check.dispose()


def test_a_missing_sqlite_file_is_not_created(store: Engine, tmp_path: Path) -> None:
    config = make_config(tmp_path, url="sqlite:///other-app.db")
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is not None and "no such SQLite database" in report.error
    assert not (tmp_path / "other-app.db").exists()


def test_wrong_table_or_column_names_are_explained(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    config = make_config(tmp_path, url=foreign, table="news")
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is not None
    assert "no table or view 'news'" in report.error and "published_news" in report.error

    config = make_config(tmp_path, url=foreign, cursor="id")
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is not None and "no such column(s) cursor: 'id'" in report.error
    assert "news_id" in report.error


def add_rows(url: str, *rows: dict[str, Any]) -> None:
    """The other application writes rows (each committed on its own, in this order)."""
    eng = create_engine(url)
    for row in rows:
        with eng.begin() as conn:
            conn.execute(insert(cms_news), [{"status": "published", **row}])
    eng.dispose()


def story(news_id: int, posted: datetime | None) -> dict[str, Any]:
    return {
        "news_id": news_id,
        "headline": f"Story {news_id}: women officers in the border guard",
        "permalink": f"https://newsroom.example.org/news/{news_id}",
        "posted": posted,
    }


def test_rows_sharing_the_cursor_value_are_all_read(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    eleven = datetime(2025, 5, 23, 11, 0)  # row 5's time: the last in the table
    add_rows(foreign, story(6, eleven), story(7, eleven))
    config = make_config(tmp_path, url=foreign, table="cms_news", cursor="posted", batch_size=2)
    first = poll_source(sessions(store), config, config.sources[0], NOW)
    # Pages of two: 2, 3 | 1, 5 | 6, 7 — the last page starts at 11:00, not after it.
    assert first.error is None and sorted(articles(store)) == ["1", "5", "6", "7"]

    add_rows(foreign, story(8, eleven))  # committed after the poll read 11:00
    again = poll_source(sessions(store), config, config.sources[0], NOW)
    assert (again.error, again.new) == (None, 1)
    assert sorted(articles(store)) == ["1", "5", "6", "7", "8"]


def test_a_row_committed_after_a_newer_one_was_read_is_read(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    config = make_config(tmp_path, url=foreign)  # cursor: news_id
    poll_source(sessions(store), config, config.sources[0], NOW)
    add_rows(foreign, story(8, datetime(2025, 5, 23, 11, 40)))
    assert poll_source(sessions(store), config, config.sources[0], NOW).new == 1
    # Row 7 took its id before row 8 but committed after the poll had read 8.
    add_rows(foreign, story(7, datetime(2025, 5, 23, 11, 35)))
    late = poll_source(sessions(store), config, config.sources[0], NOW)
    assert (late.error, late.new, late.updated) == (None, 1, 0)

    by_time = make_config(tmp_path, url=foreign, table="cms_news", cursor="posted", name="t")
    poll_source(sessions(store), by_time, by_time.sources[0], NOW)
    add_rows(foreign, story(9, datetime(2025, 5, 23, 11, 32)))  # 8 minutes behind the last
    late = poll_source(sessions(store), by_time, by_time.sources[0], NOW)
    assert (late.error, late.new) == (None, 1)
    assert "9" in articles(store)


def bad_date(url: str) -> str:
    """A cell the column's type cannot give back: SQLite keeps any text in a TIMESTAMP
    column; PostgreSQL holds 'infinity', which psycopg cannot make a datetime."""
    return "yesterday" if url.startswith("sqlite") else "infinity"


def test_a_cell_that_is_not_a_date_costs_only_its_row(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    bad = bad_date(foreign)
    eng = create_engine(foreign)
    with eng.begin() as conn:
        conn.execute(text("UPDATE cms_news SET posted = :bad WHERE news_id = 1"), {"bad": bad})
    eng.dispose()
    config = make_config(tmp_path, url=foreign)  # cursor: news_id; published_at: posted
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is None
    assert f"row news_id=1: 'posted' is not a date: {bad!r}" in report.skipped
    assert sorted(articles(store)) == ["4"]
    with sessions(store)() as s:
        state = s.get(SourceState, "cms")
        assert state is not None and state.cursor == '{"int": 4}'  # moved past it


def test_a_cursor_cell_that_is_not_a_date_costs_only_its_row(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    bad = bad_date(foreign)
    eng = create_engine(foreign)
    with eng.begin() as conn:
        conn.execute(text("UPDATE cms_news SET posted = :bad WHERE news_id = 3"), {"bad": bad})
    eng.dispose()
    config = make_config(tmp_path, url=foreign, table="cms_news", cursor="posted")
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is None
    why = f"row news_id=3: 'posted' (the cursor column) is not a date: {bad!r}"
    assert why in report.skipped
    assert sorted(articles(store)) == ["1", "5"]
    add_rows(foreign, story(6, datetime(2025, 5, 23, 11, 30)))
    assert poll_source(sessions(store), config, config.sources[0], NOW).new == 1


def test_a_second_row_with_the_same_guid_is_reported(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    add_rows(
        foreign,
        {**story(6, datetime(2025, 5, 23, 11, 20)), "permalink": "https://newsroom.example.org/a"},
        {**story(7, datetime(2025, 5, 23, 11, 30)), "permalink": "https://newsroom.example.org/a"},
    )
    # The guid is the permalink here, and the CMS has it twice.
    columns = {"guid": "permalink", "title": "headline", "url": "permalink"}
    config = make_config(tmp_path, url=foreign, table="cms_news", columns=columns)
    report = poll_source(sessions(store), config, config.sources[0], NOW)
    assert report.error is None
    assert (
        "row permalink='https://newsroom.example.org/a': another row has the same "
        "'permalink'; the later one is taken" in report.skipped
    )
    stored = articles(store)["https://newsroom.example.org/a"]
    assert stored.title.startswith("Story 7")


def test_a_backlog_read_over_several_polls_is_all_archive(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    config = make_config(tmp_path, url=foreign, max_rows=2)  # rows 1, 2 | 3, 4: two polls
    poll_source(sessions(store), config, config.sources[0], NOW)
    with sessions(store)() as s:
        state = s.get(SourceState, "cms")
        assert state is not None and state.caught_up_at is None
    poll_source(sessions(store), config, config.sources[0], NOW)
    add_rows(foreign, story(7, datetime(2025, 5, 23, 11, 40)))
    poll_source(sessions(store), config, config.sources[0], NOW)
    assert {g: a.archive for g, a in articles(store).items()} == {
        "1": True,
        "4": True,
        "7": False,
    }


@contextlib.contextmanager
def locked(url: str) -> Iterator[None]:
    """The other application holds ``cms_news`` locked against readers in an open
    transaction. The server ends that session after a minute, so a reader with no
    timeout of its own is let through (and its test fails) instead of hanging forever."""
    eng = create_engine(url, poolclass=NullPool)
    conn = eng.connect()
    try:
        if url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN EXCLUSIVE")  # SQLite locks the whole file
        else:
            conn.execute(text("SET idle_in_transaction_session_timeout = '60s'"))
            conn.execute(text("LOCK TABLE cms_news IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        with contextlib.suppress(DBAPIError):
            conn.rollback()
        conn.close()
        eng.dispose()


def test_a_read_stuck_behind_a_lock_fails_the_poll_within_its_timeout(
    foreign: str, store: Engine, tmp_path: Path
) -> None:
    other = f"sqlite:///{tmp_path / 'wire.db'}"
    wire = create_engine(other)
    foreign_meta.create_all(wire)
    with wire.begin() as conn:
        conn.execute(insert(cms_news), ROWS)
    wire.dispose()
    config = site_config(
        tmp_path,
        digests=None,
        sources=[
            cms_source(url=foreign, timeout="1s"),
            cms_source(name="wire", url=other, table="cms_news"),
        ],
    )

    with locked(foreign):
        stuck, fine = poll_all(sessions(store), config, NOW)

    assert stuck.source == "cms" and stuck.error is not None
    assert stuck.error.startswith("source 'cms': database ")
    assert "\n" not in stuck.error
    assert ("statement timeout" if foreign.startswith("postgresql") else "locked") in stuck.error
    assert fine.error is None and fine.new == 3
    with sessions(store)() as s:
        state = s.get(SourceState, "cms")
        assert state is not None and state.last_error == stuck.error
