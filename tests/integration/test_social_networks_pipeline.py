"""Feed → planner → dispatcher → Bluesky, Telegram and a webhook, on SQLite and PostgreSQL.

The servers are the loopback ones under tests/; the channels are built from the YAML-shaped
config by the Service, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.db.models import Post, SendStatus
from newsbroadcast.service import Service
from tests.bluesky_pds import BlueskyPds
from tests.site import NEWSROOM_FEED, Clock, site_config
from tests.telegram_bot_api import TelegramBotApi
from tests.webhook_receiver import WebhookReceiver

TOKEN = "123456:pipeline-token"
SECRET = "pipeline-hook-secret-0123"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(500)


def feed(image_base: str) -> str:
    items = []
    for n, (title, tag) in enumerate(
        [
            ("Kyrgyz border guards graduate first women's cohort", "border guards"),
            ("Rwanda's police academy opens to 300 recruits & trainers", "police"),
            ("Ukraine's 'Invisible Battalion' report: 5 < 10 > 2", "military"),
        ],
        start=1,
    ):
        items.append(
            f"""<item><title>{escape(title)}</title>
<link>https://newsroom.example.org/story-{n}</link><guid>story-{n}</guid>
<category>{tag}</category>
<enclosure url="{image_base}/img/story.png" type="image/png" length="{len(PNG)}"/>
<pubDate>Sat, 28 Nov 2026 0{n}:00:00 GMT</pubDate>
<description>{"Long summary words. " * 40}</description></item>"""
        )
    return f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<link>https://newsroom.example.org/</link><description>d</description>
{"".join(items)}</channel></rss>"""


def networks(
    pds: BlueskyPds, tg: TelegramBotApi, hook: WebhookReceiver, timeout: str = "5s"
) -> list[dict[str, Any]]:
    """The three channels, on the loopback servers."""
    return [
        {
            "name": "bsky",
            "type": "bluesky",
            "service": pds.url,
            "handle": "newsroom.test",
            "app_password": "app-pass-1234",
            "timeout": timeout,
            "backfill": 10,  # the feed's stories are its first read: the archive
        },
        {
            "name": "tg",
            "type": "telegram",
            "api_url": tg.url,
            "token": TOKEN,
            "chat_id": "@newsroomtest",
            "timeout": timeout,
            "backfill": 10,
        },
        {
            "name": "hook",
            "type": "webhook",
            "url": hook.url,
            "secret": SECRET,
            "timeout": timeout,
            "backfill": 10,
        },
    ]


@pytest.fixture
def servers() -> Iterator[tuple[BlueskyPds, TelegramBotApi, WebhookReceiver]]:
    with BlueskyPds() as pds, TelegramBotApi(TOKEN) as tg, WebhookReceiver(SECRET) as hook:
        pds.state.images["story.png"] = ("image/png", PNG)
        yield pds, tg, hook


def make_service(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[BlueskyPds, TelegramBotApi, WebhookReceiver],
    clock: Clock,
) -> Service:
    pds, tg, hook = servers
    (tmp_path / "feed.xml").write_text(feed(pds.url))
    config = site_config(
        tmp_path,
        sources=[NEWSROOM_FEED],
        digests=None,
        social=networks(pds, tg, hook),
    )
    return Service(config, engine=engine, clock=clock)


def test_each_story_goes_out_once_on_every_network(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[BlueskyPds, TelegramBotApi, WebhookReceiver],
) -> None:
    pds, tg, hook = servers
    clock = Clock()
    service = make_service(engine, tmp_path, servers, clock)
    service.poll()
    report = service.dispatch()
    assert report.sent == 9, report.errors

    assert len(pds.state.records) == 3
    for record in pds.state.records.values():
        assert len(record["text"]) <= 300
        assert record["embed"]["external"]["thumb"]["size"] == len(PNG)
        assert record["facets"]  # the link and the hashtag, checked by the server
    assert [m["text"].splitlines()[0] for m in tg.state.messages] == [
        "Kyrgyz border guards graduate first women's cohort",
        "Rwanda's police academy opens to 300 recruits & trainers",
        "Ukraine's 'Invisible Battalion' report: 5 < 10 > 2",
    ]
    assert len(hook.state.accepted) == 3

    with service.sessions() as session:
        posts = session.scalars(select(Post).order_by(Post.channel, Post.id)).all()
    assert {p.status for p in posts} == {SendStatus.sent}
    bsky = [p for p in posts if p.channel == "bsky"]
    assert all(p.remote_id.startswith("at://did:plc:") for p in bsky)
    assert all(
        p.remote_url.startswith("https://bsky.app/profile/newsroom.test/post/") for p in bsky
    )
    assert {p.remote_url for p in posts if p.channel == "tg"} == {
        f"https://t.me/newsroomtest/{n}" for n in (1, 2, 3)
    }

    # A second pass, and a restarted service, post nothing more and log in no more.
    clock.now += timedelta(minutes=10)
    service.poll()
    assert service.dispatch().handled == 0
    service.close()
    restarted = make_service(engine, tmp_path, servers, clock)
    restarted.poll()
    assert restarted.dispatch().handled == 0
    assert pds.state.calls["com.atproto.server.createSession"] == 1
    assert (len(pds.state.records), len(tg.state.messages), len(hook.state.accepted)) == (3, 3, 3)


def test_a_telegram_rate_limit_delays_the_post_by_retry_after(
    engine: Engine,
    tmp_path: Path,
    servers: tuple[BlueskyPds, TelegramBotApi, WebhookReceiver],
) -> None:
    _, tg, _ = servers
    tg.state.rate_limit_next = 1
    tg.state.retry_after = 120
    clock = Clock()
    service = make_service(engine, tmp_path, servers, clock)
    service.poll()
    service.dispatch()
    with service.sessions() as session:
        waiting = session.scalars(
            select(Post).where(Post.channel == "tg", Post.status == SendStatus.queued)
        ).all()
    assert len(waiting) == 1
    assert waiting[0].next_attempt_at.replace(tzinfo=UTC) == clock.now + timedelta(seconds=120)
    assert len(tg.state.messages) == 2
    # A refusal is remembered in the row, not in the process: a restarted service (a new
    # `run --once`, say) still knows the post is safe to send, and sends it once.
    assert waiting[0].first_attempt_at is None
    service.close()
    restarted = make_service(engine, tmp_path, servers, clock)
    clock.now += timedelta(seconds=120)
    restarted.dispatch()
    assert len(tg.state.messages) == 3
    restarted.dispatch()
    assert len(tg.state.messages) == 3
