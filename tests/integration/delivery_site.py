"""A site for delivery-at-scale tests: a YAML config on a given database and SMTP sink, a
feed with two stories, many subscribers inserted in bulk, and an edition planned for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, insert

from newsbroadcast.config.model import Config, load_config
from newsbroadcast.db.models import Subscriber, SubscriberStatus, utcnow
from newsbroadcast.service import Service
from tests.conftest import ROOT

SECRET = "scale-secret-0123456789"

FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel>
<title>Women in Uniform</title><link>https://newsroom.example.org/</link>
<description>test</description>
<item>
  <title>Rwanda to send all-woman peacekeeping force to South Sudan</title>
  <link>https://newsroom.example.org/2018/07/rwanda-all-woman-unit</link>
  <guid>rwanda-all-woman-unit</guid>
  <pubDate>Tue, 10 Jul 2018 09:00:00 GMT</pubDate>
  <description>Officers and medics.</description>
</item>
<item>
  <title>OSCE advances gender-sensitive border management</title>
  <link>https://newsroom.example.org/2025/05/osce-central-asia</link>
  <guid>osce-central-asia</guid>
  <pubDate>Fri, 23 May 2025 10:00:00 GMT</pubDate>
  <description>Border guards in Central Asia.</description>
</item>
</channel></rss>
"""


def write_site(
    folder: Path,
    database_url: str,
    smtp_port: int,
    *,
    email: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    cron: str = "0 7 * * *",
) -> Path:
    """Write ``folder/config.yaml`` (and the feed) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feed.xml").write_text(FEED, encoding="utf-8")
    data = {
        "root": ".",
        "templates": str(ROOT / "templates"),
        "site": {
            "name": "Women in Uniform",
            "url": "https://newsroom.example.org",
            "public_url": "https://news.example.org",
            "from": "Women in Uniform <digest@newsroom.example.org>",
            "list_id": "digest.newsroom.example.org",
            "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
            "secret": SECRET,
        },
        "database": {"url": database_url},
        "sources": [{"name": "newsroom", "type": "feed", "url": "feed.xml"}],
        "email": {
            "transport": "smtp",
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "timeout": "5s",
                **(smtp or {}),
            },
            **(email or {}),
        },
        "digests": [{"name": "daily", "cron": cron, "timezone": "UTC", "catch_up": "1d"}],
        "scheduler": {"dispatch_every": "0.2s", "lease": "5m", **(scheduler or {})},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def add_subscribers(engine: Engine, count: int, start: int = 0) -> list[str]:
    """``count`` active subscribers r<i>@example.org, inserted in one statement."""
    now = utcnow()
    addresses = [f"r{i}@example.org" for i in range(start, start + count)]
    rows = [
        {
            "email": a,
            "email_key": a,
            "language": "en",
            "status": SubscriberStatus.active.value,
            "bounce_count": 0,
            "created_at": now,
            "updated_at": now,
            "confirmed_at": now,
        }
        for a in addresses
    ]
    with engine.begin() as conn:
        conn.execute(insert(Subscriber), rows)
    return addresses


def service_for(config_path: Path, engine: Engine | None = None) -> Service:
    return Service(load_config(config_path), engine=engine)


def plan_edition(service: Service) -> int:
    """Read the feed and make an edition of the daily digest now; its id."""
    service.poll()
    planned = service.plan_digests(force=True)
    assert len(planned) == 1, planned
    return planned[0].edition_id


def nb_command(config_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsbroadcast", "--config", str(config_path), *args]


def nb_env() -> dict[str, str]:
    env = {**os.environ}
    env.pop("DATABASE_URL", None)
    env.pop("NEWSBROADCAST_CONFIG", None)
    return env


def nb(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        nb_command(config_path, *args),
        capture_output=True,
        text=True,
        env=nb_env(),
        cwd=config_path.parent,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def config_of(path: Path) -> Config:
    return load_config(path)
