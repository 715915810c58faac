"""HTML listing sources over real HTTP: selectors, pagination, teasers, robots.txt, health."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.articles.ingest import poll_source
from newsbroadcast.cli.common import EXIT_CONFIG
from newsbroadcast.config.model import Config
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, SourceState
from tests.cli_runner import run_cli
from tests.integration.site_server import Site, serve
from tests.integration.test_cli_sources import write_config
from tests.site import site_config

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "sites" / "newsroom"
NOW = datetime(2025, 5, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(SITE) as s:
        yield s


def html_source(site: Site, **changes: Any) -> dict[str, Any]:
    return {
        "type": "html",
        "name": "listing",
        "url": site.url("/news/"),
        "selectors": {
            "item": ".news-list .news-block, .featured .news-block",
            "title": ".news-title",
            "link": "a.read-more@href",
            "date": ".news-date",
            "summary": ".news-summary",
            "image": "img.news-image@src",
        },
        "date_formats": ["%d %B %Y", "%B %d, %Y"],
        "date_timezone": "Africa/Kigali",
        "pages": {"next": "nav.pagination a.next", "max_pages": 2},
        "fetch_articles": True,
        "delay": 0,
        **changes,
    }


def make_config(tmp_path: Path, *sources: dict[str, Any], **sections: Any) -> Config:
    return site_config(tmp_path, sources=list(sources), **{"digests": None, **sections})


def stored(engine: Engine) -> dict[str, Article]:
    with sessions(engine)() as s:
        return {a.title: a for a in s.scalars(select(Article))}


def test_listing_pages_become_one_article_per_story(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    config = make_config(tmp_path, html_source(site))
    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is None
    articles = stored(engine)
    assert sorted(articles) == [
        "Award for a decade of service",
        "Conference on gender and security opens in Kigali",
        "Mentoring network reaches 1,000 members",
        "Police academy graduates its first mixed class",
        "Women peacekeepers join UN mission in South Sudan",
    ]
    # The teaser above the list and the list entry are one story, with what both showed.
    a = articles["Women peacekeepers join UN mission in South Sudan"]
    assert a.url == site.url("/news/story-a.html")
    assert a.summary.startswith("Forty officers from six countries arrived in Juba")
    assert a.image == site.url("/img/stories/south-sudan.jpg")
    # Midnight in Kigali (UTC+2) is 22:00 UTC the day before.
    assert a.published_at == datetime(2025, 5, 22, 22, 0, tzinfo=UTC)

    # No date in the listing: the story's page gave article:published_time and its tag;
    # the lazy-loaded picture's relative data-src was resolved.
    b = articles["Police academy graduates its first mixed class"]
    assert b.published_at == datetime(2025, 5, 22, 7, 30, tzinfo=UTC)
    assert b.image == site.url("/img/stories/academy.jpg")
    assert b.tags == ["Training"]
    # No summary nor picture in the listing: JSON-LD NewsArticle on the page filled them.
    c = articles["Mentoring network reaches 1,000 members"]
    assert c.summary.startswith("Senior officers now mentor")
    assert c.image == site.url("/img/stories/mentoring.jpg")
    assert c.author == "Amina Uwase"
    assert c.published_at == datetime(2025, 5, 20, 22, 0, tzinfo=UTC)  # the listing's date
    assert (
        articles["Conference on gender and security opens in Kigali"].image
        == "https://cdn.example.org/kigali-conference.jpg"
    )
    # A date that fits no date_formats leaves its story out, and the report says so.
    assert "Board meeting notes (staff only)" not in articles

    # Page 2 was followed, page 3 is beyond max_pages; complete stories' pages were not read;
    # robots.txt kept us out of /private/.
    paths = site.paths()
    assert "/news/?page=2" in paths and "/news/?page=3" not in paths
    assert "/news/story-a.html" not in paths
    assert not [p for p in paths if p.startswith("/private/")]
    assert paths.count("/robots.txt") == 1
    assert all(r.headers["user-agent"].startswith("newsbroadcast/") for r in site.requests)
    assert "(+https://newsroom.example.org)" in site.requests[0].headers["user-agent"]

    # Every problem says where it was.
    problems = "\n".join(report.skipped)
    assert f"{site.url('/news/')} item 6 ('A block whose link the editor forgot')" in problems
    assert "date not understood: 'Someday soon' matches none of the date formats" in problems
    assert "the story is left out until its date can be read" in problems
    assert (
        f"{site.url('/news/story-g.html')}: HTTP 404 Not Found: there is no page at this "
        "address; check the url (article page not read"
    ) in problems
    with sessions(engine)() as s:
        state = s.get(SourceState, "listing")
        assert state is not None
        assert state.last_success_at == NOW and state.last_error is None
        assert state.items_seen == 5
        assert "item 6" in (state.last_problems or "")


def test_unchanged_listing_is_not_read_again(engine: Engine, site: Site, tmp_path: Path) -> None:
    config = make_config(tmp_path, html_source(site))
    poll_source(sessions(engine), config, config.sources[0], NOW)
    site.requests.clear()

    again = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert again.not_modified and again.error is None
    listing = [r for r in site.requests if r.path == "/news/"]
    assert len(listing) == 1 and listing[0].headers.get("if-none-match")
    # 304 on the first page: no other page, no article page is asked for.
    assert [r.path for r in site.requests if r.path != "/robots.txt"] == ["/news/"]
    assert len(stored(engine)) == 5


def test_known_stories_pages_are_not_fetched_again(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    config = make_config(tmp_path, html_source(site))
    poll_source(sessions(engine), config, config.sources[0], NOW)
    # The site changes its listing (new ETag), but the stories are the same ones.
    body = (SITE / "news" / "index.html").read_bytes() + b"<!-- edited -->"
    site.overrides["/news/"] = lambda h: (200, {"Content-Type": "text/html"}, body)
    site.requests.clear()

    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is None and report.new == 0
    assert not [p for p in site.paths() if p.startswith("/news/story-")]


def test_a_broken_second_page_costs_only_that_page(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    site.overrides["/news/?page=2"] = lambda h: (500, {"Content-Type": "text/plain"}, b"oops")
    config = make_config(tmp_path, html_source(site, fetch_articles=False))

    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is None
    assert report.new == 3  # page 1's stories with a link and a readable date
    assert any(
        s.startswith("page 2: ") and site.url("/news/?page=2") in s and "HTTP 500" in s
        for s in report.skipped
    )


def test_url_pattern_pagination(engine: Engine, site: Site, tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        html_source(
            site, fetch_articles=False, pages={"pattern": "/news/?page={page}", "max_pages": 3}
        ),
    )
    report = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert report.error is None
    assert "An old story beyond the pages we read" in stored(engine)
    assert {"/news/", "/news/?page=2", "/news/?page=3"} <= set(site.paths())


def test_listing_disallowed_by_robots_is_not_fetched(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    config = make_config(tmp_path, html_source(site, url=site.url("/private/story-d.html")))

    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is not None and "robots.txt" in report.error
    assert site.paths() == ["/robots.txt"]
    with sessions(engine)() as s:
        state = s.get(SourceState, "listing")
        assert state is not None and "robots.txt" in (state.last_error or "")
        assert state.last_success_at is None


def test_requests_to_one_host_are_spaced_by_the_delay(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    config = make_config(tmp_path, html_source(site, delay="0.3s"))
    poll_source(sessions(engine), config, config.sources[0], NOW)

    times = [r.at for r in site.requests]
    assert len(times) >= 5
    # A lower bound only, measured where the requests arrive: the client waits 0.3 s between
    # sends, but a new connection may delay one arrival, so half the delay is asked for.
    # Without the delay the gaps are a millisecond or two.
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.15


def test_a_bad_selector_is_reported_for_that_source(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    source = html_source(site)
    source["selectors"] = {**source["selectors"], "title": "h3[["}
    config = make_config(tmp_path, source)
    report = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert report.error is not None and "selectors.title" in report.error


def test_a_listing_whose_layout_changed_is_an_error_not_a_quiet_day(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    source = html_source(site)
    source["selectors"] = {**source["selectors"], "item": "article.teaser"}
    config = make_config(tmp_path, source)
    report = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert report.error is not None
    assert "no element matches selectors.item 'article.teaser'" in report.error


def test_a_field_selector_that_finds_nothing_is_a_warning_naming_the_field(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    source = html_source(site, fetch_articles=False)
    source["selectors"] = {**source["selectors"], "summary": ".teaser-text"}
    config = make_config(tmp_path, source)

    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is None and report.new == 5  # the stories are still stored
    warning = (
        f"{site.url('/news/')}: warning: selectors.summary '.teaser-text' found nothing in "
        "any of the 6 item(s)"
    )
    assert any(s.startswith(warning) for s in report.skipped), report.skipped
    # The selectors that do find something are not named.
    assert not [s for s in report.skipped if "selectors.title" in s or "selectors.date" in s]


def test_a_title_selector_that_finds_nothing_fails_the_source_instead_of_storing_none(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    source = html_source(site, fetch_articles=False)
    source["selectors"] = {**source["selectors"], "title": "h2.headline"}
    config = make_config(tmp_path, source)

    report = poll_source(sessions(engine), config, config.sources[0], NOW)

    assert report.error is not None
    assert "item(s) found but none could be stored" in report.error
    assert "selectors.title 'h2.headline' found nothing" in report.error
    with sessions(engine)() as s:
        state = s.get(SourceState, "listing")
        assert state is not None and state.last_success_at is None
        assert "selectors.title" in (state.last_error or "")
    assert stored(engine) == {}


def test_a_bad_next_page_selector_is_reported_for_that_source(
    engine: Engine, site: Site, tmp_path: Path
) -> None:
    config = make_config(tmp_path, html_source(site, pages={"next": "a..next", "max_pages": 2}))
    report = poll_source(sessions(engine), config, config.sources[0], NOW)
    assert report.error is not None and "pages.next: 'a..next' is not a CSS selector" in (
        report.error
    )


def test_check_compiles_every_selector_and_names_its_line(tmp_path: Path, site: Site) -> None:
    path = write_config(tmp_path, site)
    text = path.read_text(encoding="utf-8")
    text = text.replace("title: .news-title", "title: 'h3[['").replace(
        "    delay: 0s\n", "    delay: 0s\n    pages: {next: 'a..next'}\n"
    )
    path.write_text(text, encoding="utf-8")
    lines = text.splitlines()

    ran = run_cli(path, "check", check=False)
    assert ran.returncode == EXIT_CONFIG
    err = ran.stderr.splitlines()
    title_line = next(n for n, line in enumerate(lines, 1) if "h3[[" in line)
    next_line = next(n for n, line in enumerate(lines, 1) if "a..next" in line)
    assert any(
        e.startswith(f"{path}:{title_line}: source listing: selectors.title: 'h3[[' is not")
        for e in err
    ), err
    assert any(
        e.startswith(f"{path}:{next_line}: source listing: pages.next: 'a..next' is not")
        for e in err
    ), err
