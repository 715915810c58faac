"""The poster is killed (SIGKILL, a real process) after a network accepted a post and
before we recorded it; after a restart each network has exactly one post per story."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from newsbroadcast.db.models import Post, SendStatus
from tests import social_poster
from tests.integration.test_social_dispatch import social
from tests.loopback_api import LoopbackApi
from tests.mastodon_server import MastodonServer
from tests.site import NEWSROOM_FEED, write_feed, write_site_yaml
from tests.x_server import XServer

STORIES = 3


@pytest.mark.parametrize("killed_during", ["x", "fedi"])
def test_a_poster_killed_mid_post_posts_each_story_once_after_restart(
    database_url: str, tmp_path: Path, killed_during: str
) -> None:
    write_feed(tmp_path / "feed.xml", STORIES, now=datetime.now(UTC))
    with XServer() as xs, MastodonServer() as ms:
        config = write_site_yaml(
            tmp_path / "newsbroadcast.yaml",
            root=str(tmp_path),
            database={"url": database_url},
            sources=[NEWSROOM_FEED],
            digests=None,
            social=social(xs, ms, timeout="60s"),  # killed while waiting, not timed out
            scheduler={"lease": "2s"},  # the restarted poster takes over after this
        )
        held: LoopbackApi = xs if killed_during == "x" else ms
        held.hold_next_accept()

        poster = social_poster.start(config, xs.url)
        try:
            assert held.accepted.wait(60), poster.communicate(timeout=5)[0].decode()
            os.kill(poster.pid, signal.SIGKILL)  # accepted there, not yet recorded here
            assert poster.wait(30) == -signal.SIGKILL
        finally:
            poster.kill()
            held.release()
        assert len(xs.tweets) + len(ms.statuses) < 2 * STORIES

        restarted = social_poster.start(config, xs.url)
        output = restarted.communicate(timeout=120)[0].decode()
        assert restarted.returncode == 0, output

        assert len(xs.tweets) == STORIES
        assert len({t["text"] for t in xs.tweets}) == STORIES
        assert len(ms.statuses) == STORIES
        assert len({s["text"] for s in ms.statuses}) == STORIES

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Post.channel, Post.status, Post.remote_id)).all()
    finally:
        engine.dispose()
    assert len(rows) == 2 * STORIES
    assert {status for _, status, _ in rows} == {SendStatus.sent}
    # The one X post settled by X's duplicate refusal has no known id; all others have one.
    unknown = [channel for channel, _, remote_id in rows if remote_id is None]
    assert unknown == (["x"] if killed_during == "x" else [])
