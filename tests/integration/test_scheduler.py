"""The scheduler's wiring: which jobs exist, in which time zones, with which grace."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from newsbroadcast.app import Service
from newsbroadcast.config import Config
from newsbroadcast.models import Article
from newsbroadcast.scheduler import build_scheduler, run_forever
from tests.conftest import ROOT


def config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "root": str(tmp_path),
            "templates": str(ROOT / "templates"),
            "site": {
                "name": "W",
                "url": "https://newsroom.example.org",
                "public_url": "https://news.example.org",
                "from": "d@newsroom.example.org",
                "list_id": "digest.example.org",
                "unsubscribe_mailto": "u@example.org",
                "secret": "scheduler-secret-0123456789",
            },
            "sources": [
                {
                    "name": "newsroom",
                    "type": "feed",
                    "url": str(ROOT / "examples/feed.xml"),
                    "poll_every": "10m",
                }
            ],
            "digests": [
                {
                    "name": "daily",
                    "cron": "0 7 * * *",
                    "timezone": "Africa/Kigali",
                    "catch_up": "3h",
                }
            ],
            "scheduler": {"dispatch_every": "7s"},
        }
    )


def test_jobs_follow_the_config(tmp_path: Path) -> None:
    service = Service(config(tmp_path))
    scheduler = build_scheduler(service)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"poll:newsroom", "digest:daily", "dispatch"}
        digest = jobs["digest:daily"]
        assert str(digest.trigger.timezone) == "Africa/Kigali"
        assert digest.misfire_grace_time == 3 * 3600 and digest.coalesce
        assert digest.max_instances == 1
        first = digest.trigger.get_next_fire_time(None, datetime(2026, 11, 29, 6, tzinfo=UTC))
        assert first.astimezone(UTC) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
        assert jobs["poll:newsroom"].trigger.interval.total_seconds() == 600
        assert jobs["dispatch"].trigger.interval.total_seconds() == 7
    finally:
        scheduler.shutdown(wait=False)
        service.close()


def test_run_forever_does_the_start_up_pass_and_returns_when_stopped(tmp_path: Path) -> None:
    service = Service(config(tmp_path))
    stop = threading.Event()
    worker = threading.Thread(target=run_forever, args=(service, stop))
    worker.start()
    try:
        deadline = datetime.now(UTC).timestamp() + 30
        count = 0
        while datetime.now(UTC).timestamp() < deadline:
            with service.sessions() as session:
                count = session.scalar(select(func.count()).select_from(Article)) or 0
            if count:
                break
            threading.Event().wait(0.1)
        assert count > 0  # the start-up pass polled the feed
    finally:
        stop.set()
        worker.join(timeout=30)
        service.close()
    assert not worker.is_alive()
