"""What a network or a receiver sees of a post comes from the site and the story, never
from a row id: a site moved to a new database (or rebuilt) announces no story twice.

The first database is a SQLite file; the new one is the `engine` fixture (SQLite file and
PostgreSQL), as when a site switches to PostgreSQL by polling its feeds afresh.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from newsbroadcast.db.engine import make_engine
from newsbroadcast.db.models import Article
from tests.bluesky_pds import BlueskyPds
from tests.integration.test_social_networks_pipeline import feed, make_service, servers
from tests.site import Clock
from tests.telegram_bot_api import TelegramBotApi
from tests.webhook_receiver import WebhookReceiver

__all__ = ["servers"]  # the fixture, shared with the pipeline's tests

NEW_STORY = """<item><title>Nepal's army names its first woman brigadier</title>
<link>https://newsroom.example.org/story-0</link><guid>story-0</guid>
<pubDate>Sun, 29 Nov 2026 04:00:00 GMT</pubDate><description>News.</description></item>"""


def test_a_rebuilt_database_announces_no_story_again(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[BlueskyPds, TelegramBotApi, WebhookReceiver],
) -> None:
    pds, _, hook = servers
    clock = Clock()
    for site in ("old", "new"):
        (tmp_path / site).mkdir()
    old = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    first = make_service(old, tmp_path / "old", servers, clock)
    first.poll()
    assert first.dispatch().sent == 9
    first.close()
    posted = dict(pds.state.records)
    assert len(posted) == 3 and len(hook.state.accepted) == 3

    # The new database meets one more story first, so every old story gets another row id.
    clock.now += timedelta(hours=1)
    second = make_service(engine, tmp_path / "new", servers, clock)
    rss = feed(pds.url).replace("<item>", NEW_STORY + "<item>", 1)
    (tmp_path / "new" / "feed.xml").write_text(rss)
    second.poll()
    with second.sessions() as session:
        ids = dict(session.execute(select(Article.url, Article.id)).tuples().all())
    assert ids == {f"https://newsroom.example.org/story-{n}": n + 1 for n in range(4)}
    report = second.dispatch()
    second.close()

    assert report.failed == 0, report.errors
    # Bluesky: the old stories' records were found at their keys, one record was added.
    assert len(pds.state.records) == 4
    assert {k: v for k, v in pds.state.records.items() if k in posted} == posted
    # The webhook receiver saw the old stories' Idempotency-Keys again and dropped them.
    assert hook.state.requests == 3 + 4
    assert [a["payload"]["url"] for a in hook.state.accepted][3:] == [
        "https://newsroom.example.org/story-0"
    ]
