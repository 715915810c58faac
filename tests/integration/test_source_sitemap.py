"""Google News sitemap sources over real HTTP: an index, a gzipped child, a missing one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.articles.ingest import poll_source
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, SourceState
from tests.integration.site_server import Site, serve
from tests.integration.test_source_html import make_config

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "sites"
NOW = datetime(2025, 5, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(SITE) as s:
        yield s


def test_news_sitemap_index_is_followed(engine: Engine, site: Site, tmp_path: Path) -> None:
    source = {
        "type": "sitemap",
        "name": "news-sitemap",
        "url": site.url("/sitemaps/news-index.xml"),
        "max_sitemaps": 3,
        "delay": 0,
    }
    config = make_config(tmp_path, source)
    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is None
    with sessions(engine)() as s:
        got = {a.url: a for a in s.scalars(select(Article))}
    base = "https://newsroom.example.org/news/"
    assert sorted(got) == [
        base + "academy-mixed-class",
        base + "conference-kigali",
        base + "mentoring-network",  # from the gzipped sitemap
        base + "peacekeepers-south-sudan",
    ]
    first = got[base + "peacekeepers-south-sudan"]
    assert first.title == "Women peacekeepers join UN mission in South Sudan"
    assert first.published_at == datetime(2025, 5, 23, 7, 15, tzinfo=UTC)
    assert first.tags == ["Peacekeeping", "South Sudan"]
    assert first.image == "https://newsroom.example.org/img/stories/south-sudan.jpg"
    assert first.language == "en"  # <news:publication><news:language>
    assert got[base + "conference-kigali"].published_at is None
    # The oldest child is beyond max_sitemaps; the missing one is reported by its URL.
    assert "/sitemaps/news-2025-01-01.xml" not in site.paths()
    assert any(
        p.startswith(site.url("/sitemaps/news-missing.xml")) and "HTTP 404" in p
        for p in report.skipped
    )
    assert "https://newsroom.example.org/about/: no <news:title>" in report.skipped
    assert any("publication_date 'next Tuesday'" in p for p in report.skipped)

    site.requests.clear()
    again = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert again.not_modified
    assert [r.path for r in site.requests if r.path != "/robots.txt"] == [
        "/sitemaps/news-index.xml"
    ]
    with sessions(engine)() as s:
        state = s.get(SourceState, "news-sitemap")
        assert state is not None and state.items_seen == 4 and state.last_error is None


def test_not_a_sitemap_fails_that_source_only(engine: Engine, site: Site, tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        {"type": "sitemap", "name": "wrong", "url": site.url("/newsroom/news/"), "delay": 0},
    )
    report = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert report.error is not None and "not well-formed XML" in report.error
