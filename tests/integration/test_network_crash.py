"""The poster is killed (SIGKILL, a real process) after Bluesky, Telegram or a webhook
accepted a post and before we recorded it; after a restart there is never a second post:
Bluesky finds its record by key, the webhook receiver drops the repeated Idempotency-Key,
and Telegram, which cannot be asked, has the post marked failed instead of sent again."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from newsbroadcast.db.models import Post, SendStatus
from tests import social_poster
from tests.answer_hold import AnswerHold
from tests.bluesky_pds import BlueskyPds
from tests.integration.test_social_networks_pipeline import SECRET, TOKEN, networks
from tests.site import NEWSROOM_FEED, write_feed, write_site_yaml
from tests.telegram_bot_api import TelegramBotApi
from tests.webhook_receiver import WebhookReceiver

STORIES = 3


@pytest.mark.parametrize("killed_during", ["bsky", "tg", "hook"])
def test_a_poster_killed_mid_post_never_posts_a_story_twice(
    database_url: str, tmp_path: Path, killed_during: str
) -> None:
    write_feed(tmp_path / "feed.xml", STORIES, now=datetime.now(UTC))
    with BlueskyPds() as pds, TelegramBotApi(TOKEN) as tg, WebhookReceiver(SECRET) as hook:
        slow = "60s"  # killed while waiting, not timed out
        config = write_site_yaml(
            tmp_path / "newsbroadcast.yaml",
            root=str(tmp_path),
            database={"url": database_url},
            sources=[NEWSROOM_FEED],
            digests=None,
            social=networks(pds, tg, hook, timeout=slow),
            scheduler={"lease": "2s"},  # the restarted poster takes over after this
        )
        held: AnswerHold = {"bsky": pds.state, "tg": tg.state, "hook": hook.state}[
            killed_during
        ].hold
        held.arm()

        poster = social_poster.start(config)
        try:
            assert held.accepted.wait(60), poster.communicate(timeout=5)[0].decode()
            os.kill(poster.pid, signal.SIGKILL)  # accepted there, not yet recorded here
            assert poster.wait(30) == -signal.SIGKILL
        finally:
            poster.kill()
            held.release()

        restarted = social_poster.start(config)
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
