"""`post preview` and `check --connect` through the CLI, against the loopback networks:
each network's payload as its channel would send it, and each credential tried, with
nothing posted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from newsbroadcast.config import load_config
from newsbroadcast.service import Service
from tests.bluesky_pds import BlueskyPds
from tests.cli_runner import run_cli
from tests.mastodon_server import TOKEN as MASTODON_TOKEN
from tests.mastodon_server import MastodonServer
from tests.site import NEWSROOM_FEED, rss, write_site_yaml
from tests.telegram_bot_api import TelegramBotApi

PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)
BOT_TOKEN = "123456:test-token"
URL = "https://newsroom.example.org/story-1"


@pytest.fixture
def networks() -> Iterator[tuple[BlueskyPds, TelegramBotApi, MastodonServer]]:
    with BlueskyPds() as pds, TelegramBotApi(BOT_TOKEN) as tg, MastodonServer() as ms:
        pds.state.images["lead.png"] = ("image/png", PNG)
        yield pds, tg, ms


def channels(
    pds: BlueskyPds, tg: TelegramBotApi, ms: MastodonServer, password: str = "app-pass-1234"
) -> list[dict[str, Any]]:
    return [
        {
            "name": "bsky",
            "type": "bluesky",
            "service": pds.url,
            "handle": "newsroom.test",
            "app_password": password,
            "timeout": "5s",
        },
        {
            "name": "tg",
            "type": "telegram",
            "api_url": tg.url,
            "token": BOT_TOKEN,
            "chat_id": "@newsroomtest",
            "timeout": "5s",
        },
        {
            "name": "fedi",
            "type": "mastodon",
            "api_base_url": ms.url,
            "access_token": MASTODON_TOKEN,
            "language": "fr",
            "spoiler_text": "Sécurité",
            "timeout": "5s",
        },
        # Never reached: a preview sends nothing.
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3"},
    ]


def site(tmp_path: Path, networks: tuple[BlueskyPds, TelegramBotApi, MastodonServer]) -> Path:
    pds, tg, ms = networks
    published = format_datetime(datetime.now(UTC) - timedelta(minutes=30))
    item = (
        "<item><title>Officers &amp; trainers graduate</title>"
        f"<link>{URL}</link><guid>story-1</guid><pubDate>{published}</pubDate>"
        "<category>border management</category>"
        f'<enclosure url="{pds.url}/img/lead.png" type="image/png" length="{len(PNG)}"/>'
        "<description>Thirty officers finished training in Kigali.</description></item>"
    )
    (tmp_path / "feed.xml").write_text(rss(item), encoding="utf-8")
    path = write_site_yaml(
        tmp_path / "newsbroadcast.yaml",
        database={"url": f"sqlite:///{tmp_path / 'nb.db'}"},
        sources=[NEWSROOM_FEED],
        digests=None,
        social=channels(*networks),
    )
    service = Service(load_config(path))
    service.poll()
    service.close()
    return path


def test_post_preview_shows_each_networks_payload_and_sends_nothing(
    tmp_path: Path, networks: tuple[BlueskyPds, TelegramBotApi, MastodonServer]
) -> None:
    pds, tg, ms = networks
    path = site(tmp_path, networks)
    out = run_cli(path, "post", "preview").stdout
    shown = json.loads(run_cli(path, "post", "preview", "--json").stdout)

    assert "== bsky (bluesky): " in out and "/300 fits ==" in out
    assert f"com.atproto.repo.putRecord app.bsky.feed.post on {pds.url}" in out
    assert f"+ thumbnail: {pds.url}/img/lead.png, 2,008 bytes (image/png) would be uploaded" in out
    assert "byteStart:" in out and "+ facet link: bytes " in out
    assert "POST /bot<token>/sendMessage" in out and "parse_mode: HTML" in out
    assert BOT_TOKEN not in out
    assert "spoiler_text: Sécurité" in out and "language: fr" in out
    assert "X-Newsbroadcast-Signature: sha256 HMAC of the body" in out

    assert shown["article"] == {"id": 1, "title": "Officers & trainers graduate", "url": URL}
    posts = {p["channel"]: p for p in shown["posts"]}
    assert all(p["fits"] and p["problem"] is None for p in posts.values())
    record = posts["bsky"]["payload"]["body"]
    # Bluesky shows the link as its app does (no scheme); the facet carries the whole URL.
    shown_text = posts["bsky"]["text"].replace(URL, URL.removeprefix("https://"))
    assert record["text"] == shown_text and record["langs"] == ["en"]
    external = record["embed"]["external"]
    assert (external["uri"], external["title"]) == (URL, "Officers & trainers graduate")
    assert external["description"] == "Thirty officers finished training in Kigali."
    assert "thumb" not in external
    assert posts["bsky"]["payload"]["uploads"] == [
        {"url": f"{pds.url}/img/lead.png", "size": len(PNG), "content_type": "image/png"}
    ]
    text = record["text"].encode()
    for facet in record["facets"]:
        covered = text[facet["index"]["byteStart"] : facet["index"]["byteEnd"]].decode()
        feature = facet["features"][0]
        # A link facet covers the link as shown and carries the whole URL.
        shown = feature["uri"].removeprefix("https://") if "uri" in feature else None
        assert covered == (shown or "#" + feature.get("tag", ""))
    telegram = posts["tg"]["payload"]["body"]
    assert telegram["parse_mode"] == "HTML" and "&amp;" in telegram["text"]
    assert telegram["link_preview_options"] == {"is_disabled": False, "url": URL}
    assert posts["fedi"]["payload"]["body"] == {
        "status": posts["fedi"]["text"],
        "visibility": "public",
        "language": "fr",
        "spoiler_text": "Sécurité",
    }
    hook = posts["hook"]["payload"]["body"]
    assert (hook["text"], hook["url"], hook["channel"]) == (posts["hook"]["text"], URL, "hook")

    assert "com.atproto.server.createSession" not in pds.state.calls  # no login, no upload
    assert pds.state.records == {} and pds.state.blobs == {}
    assert tg.state.requests == 0 and ms.statuses == []


def test_check_connect_logs_in_to_bluesky_and_asks_telegram_who_the_bot_is(
    tmp_path: Path, networks: tuple[BlueskyPds, TelegramBotApi, MastodonServer]
) -> None:
    pds, tg, ms = networks
    path = site(tmp_path, networks)
    out = run_cli(path, "check", "--connect").stdout
    assert (
        "channel bsky (bluesky): OK: session for @newsroom.test "
        f"(did:plc:newsroom0000000000000000) on {pds.url}"
    ) in out
    assert (
        "channel tg (telegram): OK: bot @newsroom_test_bot; chat @newsroomtest: channel "
        "'Newsroom test'"
    ) in out
    assert "channel hook (webhook): OK: no credential check for this type" in out
    assert pds.state.records == {} and tg.state.messages == [] and ms.statuses == []


def test_check_connect_fails_naming_the_channel_whose_credentials_are_refused(
    tmp_path: Path, networks: tuple[BlueskyPds, TelegramBotApi, MastodonServer]
) -> None:
    pds, tg, ms = networks
    entries = channels(pds, tg, ms, password="wrong-password")
    entries[1]["token"] = "999:revoked"
    path = write_site_yaml(
        tmp_path / "newsbroadcast.yaml",
        database={"url": f"sqlite:///{tmp_path / 'nb.db'}"},
        sources=[NEWSROOM_FEED],
        digests=None,
        social=entries,
    )
    ran = run_cli(path, "check", "--connect", check=False)
    assert ran.returncode != 0
    lines = {line.split(":", 1)[0]: line for line in ran.stdout.splitlines()}
    bsky, telegram = lines["channel bsky (bluesky)"], lines["channel tg (telegram)"]
    assert "FAILED" in bsky and "401 AuthenticationRequired" in bsky
    assert "FAILED" in telegram and "401 Unauthorized" in telegram
    assert "999:revoked" not in ran.stdout  # a token is never shown
    assert lines["channel fedi (mastodon)"].startswith("channel fedi (mastodon): OK")
