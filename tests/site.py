"""The one test site: its settings as a dict with keyword overrides, as a Config or as a
YAML file; a settable clock; an RSS feed of N stories.

    config = site_config(tmp_path, sources=[NEWSROOM_FEED], email=smtp_email(sink.port))
    path = write_site_yaml(tmp_path / "newsbroadcast.yaml", database={"url": url})
    write_feed(tmp_path / "feed.xml", 3, now=clock.now)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import yaml

from newsbroadcast.config.model import Config

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
SECRET = "test-secret-0123456789abcdef"

SITE: dict[str, Any] = {
    "name": "Women in Uniform",
    "url": "https://newsroom.example.org",
    "public_url": "https://news.example.org",
    "from": "Women in Uniform <digest@newsroom.example.org>",
    "list_id": "digest.newsroom.example.org",
    "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
    "secret": SECRET,
}
NEWSROOM_FEED: dict[str, Any] = {"name": "newsroom", "type": "feed", "url": "feed.xml"}
DAILY: dict[str, Any] = {"name": "daily", "cron": "0 7 * * *", "timezone": "Africa/Kigali"}

# 07:30 in Kigali, the morning after the daily digest's send time.
MORNING = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)


def site_settings(root: Path | str = ROOT, **sections: Any) -> dict[str, Any]:
    """The site's settings as the YAML would hold them. ``site`` is merged key by key (a
    test changes just ``secret``); any other keyword replaces that top-level section, and
    ``None`` leaves it out."""
    data: dict[str, Any] = {
        "root": str(root),
        "templates": str(TEMPLATES),
        "site": {**SITE, **sections.pop("site", {})},
        "digests": [DAILY],
        **sections,
    }
    return {key: value for key, value in data.items() if value is not None}


def site_config(root: Path | str = ROOT, **sections: Any) -> Config:
    """:func:`site_settings`, validated."""
    return Config.model_validate(site_settings(root, **sections))


def write_site_yaml(path: Path, **sections: Any) -> Path:
    """:func:`site_settings` written as YAML at ``path`` (its root: the file's folder,
    unless ``root`` is given); returns ``path``."""
    root = sections.pop("root", path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(site_settings(root, **sections)), encoding="utf-8")
    return path


def smtp_email(port: int, *, smtp: dict[str, Any] | None = None, **email: Any) -> dict[str, Any]:
    """An ``email`` section sending by plain SMTP to 127.0.0.1:``port`` (a test sink)."""
    return {
        "transport": "smtp",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", **(smtp or {})},
        **email,
    }


class Clock:
    """A clock a test sets by hand: ``clock.now = ...``; the service calls it."""

    def __init__(self, now: datetime = MORNING) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def rss(items: str) -> str:
    """An RSS 2.0 document around ``items`` (``<item>`` elements)."""
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        "<link>https://newsroom.example.org/</link><description>d</description>"
        f"{items}</channel></rss>"
    )


def story_item(
    i: int,
    now: datetime,
    *,
    title: str | None = None,
    tags: list[str] | None = None,
    dated: bool = True,
) -> str:
    """Story ``i``: link /story-<i>, guid story-<i>, published ``30 + i`` minutes before ``now``."""
    title = title if title is not None else f"Story {i}: women officers in the border guard"
    tags = tags if tags is not None else ["border management"]
    categories = "".join(f"<category>{t}</category>" for t in tags)
    date = format_datetime(now - timedelta(minutes=30 + i))
    published = f"<pubDate>{date}</pubDate>" if dated else ""
    return (
        f"<item><title>{title}</title>"
        f"<link>https://newsroom.example.org/story-{i}</link><guid>story-{i}</guid>"
        f"{published}{categories}"
        f"<description>Cohort {i} of thirty officers finished training.</description></item>"
    )


def write_feed(
    path: Path,
    stories: int,
    *,
    now: datetime,
    titles: dict[int, str] | None = None,
    tags: dict[int, list[str]] | None = None,
    dated: bool = True,
) -> Path:
    """An RSS file of ``stories`` stories (0 .. stories-1, see :func:`story_item`);
    ``titles`` and ``tags`` replace some stories' title or tags. Returns ``path``."""
    titles, tags = titles or {}, tags or {}
    items = "".join(
        story_item(i, now, title=titles.get(i), tags=tags.get(i), dated=dated)
        for i in range(stories)
    )
    path.write_text(rss(items), encoding="utf-8")
    return path


def make_config(**sections: Any) -> Config:
    """The demo site for pure tests (root: this repository), its daily digest's subject
    naming the lead story, templates under its root; keywords as in :func:`site_settings`."""
    sections.setdefault("templates", None)
    sections.setdefault(
        "digests",
        [{**DAILY, "subject": "{{ site.name }} daily: {{ edition.articles[0].title }}"}],
    )
    return site_config(**sections)
