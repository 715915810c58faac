"""The new sources as an admin meets them: YAML, `articles add`, `api hash-token`, `status`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from newsbroadcast.articles.ingest import poll_all
from newsbroadcast.articles.push import hash_token
from newsbroadcast.config.model import load_config
from newsbroadcast.db.engine import make_engine, sessions, upgrade
from newsbroadcast.db.models import Article, utcnow
from newsbroadcast.errors import ConfigError
from tests.cli_runner import run_cli
from tests.integration.site_server import Site, serve

SITE = Path(__file__).resolve().parents[1] / "fixtures" / "sites" / "newsroom"


@pytest.fixture
def site() -> Iterator[Site]:
    with serve(SITE) as s:
        yield s


def write_config(tmp_path: Path, site: Site, extra: str = "") -> Path:
    other = tmp_path / "cms.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE news (id INTEGER PRIMARY KEY, title TEXT, link TEXT)")
        conn.executemany(
            "INSERT INTO news VALUES (?, ?, ?)",
            [(1, "From the CMS", "https://newsroom.example.org/cms/1"), (2, "", None)],
        )
    path = tmp_path / "config" / "newsbroadcast.yaml"
    path.parent.mkdir()
    path.write_text(
        f"""
site:
  name: Women in Uniform
  url: https://newsroom.example.org
  public_url: http://localhost:8000
  from: digest@newsroom.example.org
  list_id: digest.newsroom.example.org
  unsubscribe_mailto: unsubscribe@newsroom.example.org
  secret: test-secret-0123456789abcdef
database:
  url: sqlite:///var/nb.db
sources:
  - name: listing
    type: html
    url: {site.url("/news/")}
    delay: 0s
    selectors:
      item: .news-list .news-block
      title: .news-title
      link: a.read-more@href
      date: .news-date
    date_formats: ["%d %B %Y", "%B %d, %Y"]
  - name: cms
    type: sql
    url: sqlite:///cms.db
    table: news
    columns: {{guid: id, title: title, url: link}}
    cursor: id
api:
  tokens: ["{hash_token("t0ken")}"]
{extra}"""
    )
    return path


def test_status_shows_each_source_health_and_what_was_left_out(tmp_path: Path, site: Site) -> None:
    path = write_config(tmp_path, site)
    config = load_config(path)
    engine = make_engine(config.database_url)
    upgrade(engine)
    reports = poll_all(sessions(engine), config, utcnow())
    engine.dispose()
    assert [r.error for r in reports] == [None, None]

    add = ["articles", "add", "--url"]
    out = run_cli(path, *add, site.url("/news/press-release.html?utm_source=newsletter")).stdout
    assert "added: New partnership with the regional police college" in out
    # The listing already brought this story in: same address, one article.
    assert (
        "already there: Mentoring network"
        in run_cli(path, *add, site.url("/news/story-c.html")).stdout
    )
    engine = make_engine(config.database_url)
    with sessions(engine)() as s:
        pushed = s.scalars(select(Article).where(Article.source == "manual")).one()
        assert pushed.url == site.url("/news/press-release.html")  # the canonical link
        assert pushed.summary.startswith("The college and the network")
        assert pushed.image == site.url("/img/stories/partnership.jpg")
        assert pushed.published_at == datetime(2025, 5, 23, 6, 0, tzinfo=UTC)
        assert pushed.author == "Press office"
    engine.dispose()

    out = run_cli(path, "status").stdout
    assert "  listing: last poll " in out and "3 items seen, ok" in out
    assert "    left out: " + site.url("/news/") + " item 5" in out
    assert "  cms: last poll" in out and "1 items seen, ok" in out
    assert "    left out: row id=2: empty 'title' (the title column)" in out
    assert "  manual: last poll" in out and "2 items seen, ok" in out


def test_articles_add_reports_an_unreadable_page(tmp_path: Path, site: Site) -> None:
    path = write_config(tmp_path, site)
    unreadable = run_cli(path, "articles", "add", "--url", site.url("/nope"), check=False)
    assert unreadable.returncode == 1
    assert "HTTP 404" in unreadable.stderr
    assert "manual: last poll" in run_cli(path, "status").stdout


def test_hash_token_makes_a_config_line() -> None:
    lines = run_cli(None, "api", "hash-token").stdout.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    assert lines[1].endswith(hash_token(token))
    assert len(token) >= 40


def test_source_mistakes_are_located_in_the_file(tmp_path: Path, site: Site) -> None:
    path = write_config(tmp_path, site)
    text = path.read_text().replace("    delay: 0s\n", "    delay: 0s\n    fetch_article: true\n")
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.line == text.splitlines().index("    fetch_article: true") + 1
    assert "fetch_article" in problem.message
