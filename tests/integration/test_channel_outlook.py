"""`status` says when each channel posts next, from the database every dispatcher shares:
the pace's slot, its hours, and the posts waiting (on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from newsbroadcast.config import load_config
from newsbroadcast.db.models import ChannelState
from newsbroadcast.outbox.pacing import outlook
from newsbroadcast.service import Service
from tests.cli_runner import run_cli
from tests.site import NEWSROOM_FEED, Clock, site_config, write_feed, write_site_yaml

KIGALI = {"every": "30m", "between": "07:00-21:00", "timezone": "Africa/Kigali"}


def walls(tmp_path: Path, pace: dict[str, Any]) -> list[dict[str, Any]]:
    common = {"type": "file", "dir": str(tmp_path / "posts"), "backfill": 10}
    return [{"name": "paced", "pace": pace, **common}, {"name": "free", **common}]


def test_the_next_post_waits_for_the_slot_then_for_the_morning(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))  # 14:00 in Kigali
    write_feed(tmp_path / "feed.xml", 3, now=clock())
    config = site_config(
        tmp_path, sources=[NEWSROOM_FEED], digests=None, social=walls(tmp_path, KIGALI)
    )
    service = Service(config, engine=engine, clock=clock)
    service.poll()
    with service.sessions() as session:
        before = {o.channel: o for o in outlook(session, config.social, clock())}
    assert (before["paced"].queued, before["paced"].next_at) == (3, clock())
    assert before["free"].line(clock()) == "free: 3 queued, next post now"

    assert service.dispatch().sent == 4  # three on the free channel, one on the paced
    with service.sessions() as session:
        after = {o.channel: o for o in outlook(session, config.social, clock())}
    assert after["free"].line(clock()) == "free: nothing queued"
    assert after["paced"].queued == 2
    assert after["paced"].next_at == clock() + timedelta(minutes=30)

    clock.now = datetime(2026, 11, 30, 18, 45, tzinfo=UTC)  # 20:45: past the slot, but
    service.dispatch()  # one more post takes the slot to 21:15, after the window closes
    with service.sessions() as session:
        (paced, _) = outlook(session, config.social, clock())
    assert paced.queued == 1
    assert paced.next_at == datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # 07:00 in Kigali
    service.close()


def test_status_prints_each_channels_queue_and_next_post_time(tmp_path: Path) -> None:
    write_feed(tmp_path / "feed.xml", 2, now=datetime.now(UTC))
    path = write_site_yaml(
        tmp_path / "newsbroadcast.yaml",
        database={"url": f"sqlite:///{tmp_path / 'nb.db'}"},
        sources=[NEWSROOM_FEED],
        digests=None,
        social=walls(tmp_path, {"every": "2h"}),
    )
    service = Service(load_config(path))
    service.poll()
    out = run_cli(path, "status").stdout
    assert "channels:\n  paced: 2 queued, next post now (pacing 1 per 2 h)\n" in out
    assert "  free: 2 queued, next post now\n" in out

    service.dispatch()
    with service.sessions() as session:
        slot = session.scalar(select(ChannelState.next_post_at).where(ChannelState.name == "paced"))
    service.close()
    assert slot is not None
    out = run_cli(path, "status").stdout
    assert f"  paced: 1 queued, next post at {slot:%Y-%m-%d %H:%M} UTC (pacing 1 per 2 h)" in out
    assert "  free: nothing queued\n" in out
