"""The poster is killed (SIGKILL, a real process) after Bluesky, Telegram or a webhook
accepted a post and before we recorded it; after a restart there is never a second post:
Bluesky finds its record by key, the webhook receiver drops the repeated Idempotency-Key,
and Telegram, which cannot be asked, has the post marked failed instead of sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select

from newsbroadcast.db.models import Post, SendStatus
from tests.answer_hold import AnswerHold
from tests.bluesky_pds import BlueskyPds
from tests.conftest import ROOT
from tests.telegram_bot_api import TelegramBotApi
from tests.webhook_receiver import WebhookReceiver

STORIES = 3
TOKEN = "123456:crash-token"
SECRET = "crash-hook-secret-0123"
SITE = {
    "name": "Women in Uniform",
    "url": "https://newsroom.example.org",
    "public_url": "https://news.example.org",
    "from": "digest@newsroom.example.org",
    "list_id": "digest.example.org",
    "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
    "secret": "crash-secret-0123456789",
}


def write_feed(path: Path, now: datetime) -> None:
    items = "".join(
        f"""<item><title>Story {n}</title><link>https://newsroom.example.org/s{n}</link>
<guid>s{n}</guid><pubDate>{format_datetime(now - timedelta(hours=n))}</pubDate>
<description>Summary {n}.</description></item>"""
        for n in range(1, STORIES + 1)
    )
    path.write_text(
        f"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<link>https://newsroom.example.org/</link><description>d</description>{items}</channel></rss>"""
    )


def start_poster(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.social_poster", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("killed_during", ["bsky", "tg", "hook"])
def test_a_poster_killed_mid_post_never_posts_a_story_twice(
    database_url: str, tmp_path: Path, killed_during: str
) -> None:
    write_feed(tmp_path / "feed.xml", datetime.now(UTC))
    with BlueskyPds() as pds, TelegramBotApi(TOKEN) as tg, WebhookReceiver(SECRET) as hook:
        config = tmp_path / "newsbroadcast.yaml"
        slow = "60s"  # killed while waiting, not timed out
        document = {
            "root": str(tmp_path),
            "templates": str(ROOT / "templates"),
            "site": SITE,
            "database": {"url": database_url},
            "sources": [{"name": "newsroom", "type": "feed", "url": "feed.xml"}],
            "social": [
                {
                    "name": "bsky",
                    "type": "bluesky",
                    "service": pds.url,
                    "handle": "newsroom.test",
                    "app_password": "app-pass-1234",
                    "timeout": slow,
                    "backfill": 10,  # the feed's stories are its first read: the archive
                },
                {
                    "name": "tg",
                    "type": "telegram",
                    "api_url": tg.url,
                    "token": TOKEN,
                    "chat_id": "@newsroomtest",
                    "timeout": slow,
                    "backfill": 10,
                },
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": hook.url,
                    "secret": SECRET,
                    "backfill": 10,
                },
            ],
            "scheduler": {"lease": "2s"},  # the restarted poster takes over after this
        }
        config.write_text(yaml.safe_dump(document))
        held: AnswerHold = {"bsky": pds.state, "tg": tg.state, "hook": hook.state}[
            killed_during
        ].hold
        held.arm()

        poster = start_poster(config)
        try:
            assert held.accepted.wait(60), poster.communicate(timeout=5)[0].decode()
            os.kill(poster.pid, signal.SIGKILL)  # accepted there, not yet recorded here
            assert poster.wait(30) == -signal.SIGKILL
        finally:
            poster.kill()
            held.release()

        restarted = start_poster(config)
        output = restarted.communicate(timeout=120)[0].decode()
        assert restarted.returncode == 0, output

        assert len(pds.state.records) == STORIES
        assert len(hook.state.accepted) == STORIES
        assert len(tg.state.messages) == STORIES
        assert len({m["text"] for m in tg.state.messages}) == STORIES
        assert pds.state.calls["com.atproto.server.createSession"] == 1

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Post.channel, Post.status, Post.last_error)).all()
    finally:
        engine.dispose()
    assert len(rows) == 3 * STORIES
    failed = [(channel, error) for channel, status, error in rows if status != SendStatus.sent]
    if killed_during == "tg":
        # Posted, but unconfirmable: recorded as failed with the reason, not sent again.
        assert [c for c, _ in failed] == ["tg"]
        assert "cannot confirm" in failed[0][1]
    else:
        assert failed == []
