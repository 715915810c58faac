"""A site for delivery-at-scale tests: a YAML config on a given database and SMTP sink, a
feed with two stories, many subscribers inserted in bulk, and an edition planned for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from newsbroadcast.config.model import Config, load_config
from newsbroadcast.db.models import Subscriber, SubscriberStatus, utcnow
from newsbroadcast.service import Service
from tests.cli_runner import Ran, run_cli
from tests.site import NEWSROOM_FEED, smtp_email, write_site_yaml

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
    templates: Path | None = None,
) -> Path:
    """Write ``folder/config.yaml`` (and the feed) and return its path (``templates``: a
    folder of the site's own instead of the project's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feed.xml").write_text(FEED, encoding="utf-8")
    return write_site_yaml(
        folder / "config.yaml",
        root=".",
        site={"secret": SECRET},
        database={"url": database_url},
        sources=[NEWSROOM_FEED],
        email=smtp_email(smtp_port, smtp={"timeout": "5s", **(smtp or {})}, **(email or {})),
        digests=[{"name": "daily", "cron": cron, "timezone": "UTC", "catch_up": "1d"}],
        scheduler={"dispatch_every": "0.2s", "lease": "5m", **(scheduler or {})},
        **({} if templates is None else {"templates": str(templates)}),
    )


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


def nb(config_path: Path, *args: str) -> Ran:
    """The command on the site, called in this process (tests/cli_runner.py)."""
    return run_cli(config_path, *args, cwd=config_path.parent)


def config_of(path: Path) -> Config:
    return load_config(path)
