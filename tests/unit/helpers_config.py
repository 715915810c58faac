"""A valid Config for pure tests, built in code (no YAML, no environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from newsbroadcast.config.model import Config

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
SECRET = "test-secret-0123456789abcdef"


def make_config(**sections: Any) -> Config:
    """The demo site's settings; each keyword replaces one top-level section (``site`` is
    merged key by key, so a test can change just ``reply_to``)."""
    site = {
        "name": "Women in Uniform",
        "url": "https://newsroom.example.org",
        "public_url": "https://news.example.org",
        "from": "Women in Uniform <digest@newsroom.example.org>",
        "list_id": "digest.newsroom.example.org",
        "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
        "secret": SECRET,
        **sections.pop("site", {}),
    }
    data: dict[str, Any] = {
        "root": str(ROOT),
        "site": site,
        "digests": [
            {
                "name": "daily",
                "cron": "0 7 * * *",
                "timezone": "Africa/Kigali",
                "subject": "{{ site.name }} daily: {{ edition.articles[0].title }}",
            }
        ],
        **sections,
    }
    return Config.model_validate(data)
