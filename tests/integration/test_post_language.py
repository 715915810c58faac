"""A post goes out in its story's language: feed → store → planner → dispatcher → the
loopback Mastodon and PDS, which record what each request carried (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from newsbroadcast.articles.store import upsert_articles
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article
from newsbroadcast.service import Service
from newsbroadcast.sources.base import ArticleDraft
from tests.bluesky_pds import BlueskyPds
from tests.mastodon_server import TOKEN, MastodonServer
from tests.site import MORNING, NEWSROOM_FEED, Clock, site_config

FEED = """<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Amakuru</title><link>https://newsroom.example.org/</link><description>d</description>
<language>rw</language>
<item><title>Abapolisi b'abagore basoje amahugurwa</title>
<link>https://newsroom.example.org/rw-1</link><guid>rw-1</guid></item>
<item><title>Les gardes-frontières terminent leur formation</title>
<link>https://newsroom.example.org/fr-1</link><guid>fr-1</guid>
<dc:language>fr-FR</dc:language></item>
</channel></rss>"""


def test_each_post_is_sent_in_its_storys_language(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_text(FEED, encoding="utf-8")
    with MastodonServer() as fedi, BlueskyPds() as pds:
        social = [
            {
                "name": "fedi",
                "type": "mastodon",
                "api_base_url": fedi.url,
                "access_token": TOKEN,
                "language": "en",
                "backfill": 10,
            },
            {
                "name": "bsky",
                "type": "bluesky",
                "service": pds.url,
                "handle": "newsroom.test",
                "app_password": "app-pass-1234",
                "link_card": False,
                "backfill": 10,
            },
        ]
        config = site_config(tmp_path, sources=[NEWSROOM_FEED], digests=None, social=social)
        service = Service(config, engine=engine, clock=Clock())
        try:
            service.poll()
            report = service.dispatch()
        finally:
            service.close()
        assert report.sent == 4, report.errors
        by_title = {s["text"].split("\n")[0]: s["language"] for s in fedi.statuses}
        langs = {r["text"].split("\n")[0]: r["langs"] for r in pds.state.records.values()}
    assert by_title == {
        "Abapolisi b'abagore basoje amahugurwa": "rw",
        "Les gardes-frontières terminent leur formation": "fr",  # ISO 639 for Mastodon
    }
    assert langs == {
        "Abapolisi b'abagore basoje amahugurwa": ["rw"],
        "Les gardes-frontières terminent leur formation": ["fr-FR"],  # BCP 47 for Bluesky
    }


def test_the_store_keeps_the_language_and_fills_it_in_for_older_stories(engine: Engine) -> None:
    old = ArticleDraft(guid="a", title="Old story", url="https://newsroom.example.org/a")
    with sessions(engine).begin() as session:
        upsert_articles(session, "newsroom", [old], MORNING)
    with sessions(engine).begin() as session:
        again = ArticleDraft(guid="a", title="Old story", url=old.url, language="rw_RW")
        new = ArticleDraft(guid="b", title="New", url="https://x.org/b", language="EN-gb")
        result = upsert_articles(session, "newsroom", [again, new], MORNING)
    assert (result.updated, result.unchanged) == (0, 1)  # a language is no edit
    with sessions(engine)() as session:
        stored = dict(session.execute(select(Article.guid, Article.language)).tuples().all())
    assert stored == {"a": "rw-RW", "b": "en-GB"}
