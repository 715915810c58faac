"""The bluesky channel against a PDS on loopback, through the real atproto client."""

from __future__ import annotations

import dataclasses
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from newsbroadcast.channels.base import OutgoingPost, story_identity
from newsbroadcast.channels.bluesky import BlueskyChannel, record_key
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from tests.bluesky_pds import TID, BlueskyPds

CREATE = "com.atproto.server.createSession"
REFRESH = "com.atproto.server.refreshSession"
PUT = "com.atproto.repo.putRecord"
UPLOAD = "com.atproto.repo.uploadBlob"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(2000)
SITE = "digest.newsroom.example.org"


@pytest.fixture
def pds() -> Iterator[BlueskyPds]:
    with BlueskyPds() as server:
        server.state.images["small.png"] = ("image/png", PNG)
        server.state.images["huge.jpg"] = ("image/jpeg", bytes(1_000_001))
        yield server


def channel(pds: BlueskyPds, tmp_path: Path, password: str = "app-pass-1234") -> BlueskyChannel:
    return BlueskyChannel(
        "bsky",
        service=pds.url,
        handle="newsroom.test",
        app_password=password,
        session_file=tmp_path / "var" / "bluesky-bsky.session",
        timeout=5,
    )


def post(
    n: int,
    text: str | None = None,
    image: str | None = None,
    *,
    article_id: int | None = None,
    site: str = SITE,
) -> OutgoingPost:
    """Story ``n`` of ``site``; ``article_id`` is its row id (by default ``n``), which a
    rebuilt database gives anew."""
    url = f"https://newsroom.example.org/story-{n}"
    row = n if article_id is None else article_id
    return OutgoingPost(
        post_id=100 + row,
        article_id=row,
        channel="bsky",
        text=text or f"Café crème 🇷🇼 story {n} {url} #BorderGuards #Women",
        url=url,
        title=f"Story {n}",
        summary="<p>Thirty officers &amp; their <b>trainers</b>.</p>",
        image=image,
        story=story_identity(site, "newsroom", f"story-{n}"),
    )


def test_a_post_has_byte_exact_facets_a_link_card_and_a_deterministic_key(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    image = f"{pds.url}/img/small.png"
    published = channel(pds, tmp_path).publish(post(7, image=image))

    rkey = record_key(post(7))
    assert list(pds.state.records) == [rkey]
    assert published.remote_id == f"at://{pds.state.account.did}/app.bsky.feed.post/{rkey}"
    assert published.remote_url == f"https://bsky.app/profile/newsroom.test/post/{rkey}"
    record = pds.state.records[rkey]
    kinds = [f["features"][0]["$type"].split("#")[1] for f in record["facets"]]
    assert kinds == ["link", "tag", "tag"]  # the server checked each range covers its value
    card = record["embed"]["external"]
    assert card["uri"] == "https://newsroom.example.org/story-7"
    assert card["title"] == "Story 7"
    assert card["description"] == "Thirty officers & their trainers."
    assert card["thumb"]["mimeType"] == "image/png"
    assert card["thumb"]["size"] == len(PNG)
    assert record["langs"] == ["en"]


def noise_jpeg(side: int) -> bytes:
    """A photo-sized JPEG that compresses badly (noise): over 1,000,000 bytes."""
    pixels = random.Random(side).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, "JPEG", quality=95)
    return out.getvalue()


def test_an_image_over_one_million_bytes_is_scaled_down_to_fit(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    big = noise_jpeg(1100)
    assert len(big) > 1_000_000
    pds.state.images["lead.jpg"] = ("image/jpeg", big)
    channel(pds, tmp_path).publish(post(1, image=f"{pds.url}/img/lead.jpg"))
    (record,) = pds.state.records.values()
    thumb = record["embed"]["external"]["thumb"]
    assert thumb["mimeType"] == "image/jpeg"
    assert 0 < thumb["size"] <= 1_000_000  # the server checked the blob was uploaded
    assert pds.state.calls[UPLOAD] == 1


def test_bytes_that_are_no_image_give_a_card_without_thumbnail(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    channel(pds, tmp_path).publish(post(1, image=f"{pds.url}/img/huge.jpg"))
    (record,) = pds.state.records.values()
    assert "thumb" not in record["embed"]["external"]
    assert pds.state.calls.get(UPLOAD, 0) == 0


def test_a_long_link_is_shown_short_and_its_facet_carries_the_whole_url(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    url = "https://newsroom.example.org/2026/11/rwanda-all-woman-peacekeeping-force?utm_source=b"
    text = "Ingabo z'u Rwanda. " * 12 + url + " #Rwanda"  # 319 graphemes written out
    ch = channel(pds, tmp_path)
    assert ch.measure(text) <= 300
    ch.publish(post(1, text=text))
    (record,) = pds.state.records.values()
    shown = "newsroom.example.org/2026/11/rwan…"
    assert record["text"] == "Ingabo z'u Rwanda. " * 12 + shown + " #Rwanda"
    link = record["facets"][0]
    assert link["features"][0]["uri"] == url
    start, end = link["index"]["byteStart"], link["index"]["byteEnd"]
    assert record["text"].encode()[start:end].decode() == "newsroom.example.org/2026/11/rwan…"


def test_the_post_is_in_the_storys_language_else_the_channels(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    ch = channel(pds, tmp_path)
    ch.publish(dataclasses.replace(post(1), language="rw"))
    ch.publish(post(2))
    langs = {r["embed"]["external"]["uri"][-1]: r["langs"] for r in pds.state.records.values()}
    assert langs == {"1": ["rw"], "2": ["en"]}


def test_a_story_without_summary_has_its_title_as_the_cards_description(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    channel(pds, tmp_path).publish(dataclasses.replace(post(1), summary=""))
    (record,) = pds.state.records.values()
    assert record["embed"]["external"]["description"] == "Story 1"


def test_one_login_serves_many_posts_and_the_next_process(pds: BlueskyPds, tmp_path: Path) -> None:
    first = channel(pds, tmp_path)
    for article_id in range(1, 6):
        first.publish(post(article_id))
    # A restarted service reads the stored session instead of logging in again.
    second = channel(pds, tmp_path)
    for article_id in range(6, 9):
        second.publish(post(article_id))
    assert len(pds.state.records) == 8
    assert pds.state.calls[CREATE] == 1
    stored = (tmp_path / "var" / "bluesky-bsky.session").stat()
    assert stored.st_mode & 0o077 == 0  # live tokens: readable by the owner only


def test_a_token_expired_on_the_server_is_refreshed_not_replaced_by_a_login(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    ch = channel(pds, tmp_path)
    ch.publish(post(1))
    pds.state.advance(3 * 3600)  # the 2-hour access token is now expired, server-side
    ch.publish(post(2))
    assert pds.state.calls[REFRESH] == 1
    assert pds.state.calls[CREATE] == 1
    # The refreshed session was saved: a new process uses it (the old refresh token is spent).
    channel(pds, tmp_path).publish(post(3))
    assert pds.state.calls[CREATE] == 1
    assert len(pds.state.records) == 3


def test_a_short_lived_token_is_refreshed_before_use(pds: BlueskyPds, tmp_path: Path) -> None:
    pds.state.access_ttl = 600  # the client refreshes tokens within 15 minutes of expiry
    ch = channel(pds, tmp_path)
    ch.publish(post(1))
    ch.publish(post(2))
    assert pds.state.calls[REFRESH] >= 1
    assert pds.state.calls[CREATE] == 1
    assert len(pds.state.records) == 2


def test_when_the_refresh_token_expired_too_it_logs_in_again(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    channel(pds, tmp_path).publish(post(1))
    pds.state.advance(100 * 86400)
    channel(pds, tmp_path).publish(post(2))
    assert pds.state.calls[CREATE] == 2
    assert len(pds.state.records) == 2


def test_a_post_whose_answer_was_lost_is_not_posted_twice(pds: BlueskyPds, tmp_path: Path) -> None:
    ch = channel(pds, tmp_path)
    pds.state.drop_next_put = True  # stored on the server, the answer never arrives
    with pytest.raises(TransientSendError):
        ch.publish(post(1))
    published = ch.publish(post(1))  # the dispatcher's retry
    assert len(pds.state.records) == 1
    assert pds.state.calls[PUT] == 1  # found by its key, not written again
    assert published.remote_id.endswith("/" + record_key(post(1)))


def test_a_retry_that_misses_the_earlier_record_rewrites_it(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    # Two dispatchers racing on one post both look, find nothing, and write: the fixed
    # key makes the second write replace the first instead of adding a post.
    ch = channel(pds, tmp_path)
    ch.publish(post(1))
    pds.state.hide_records = True
    ch.publish(post(1))
    assert pds.state.calls[PUT] == 2
    assert len(pds.state.records) == 1


def test_a_key_holding_another_post_is_never_overwritten(pds: BlueskyPds, tmp_path: Path) -> None:
    foreign = {"$type": "app.bsky.feed.post", "text": "Written by hand", "createdAt": "x"}
    pds.state.records[record_key(post(1))] = foreign
    with pytest.raises(PermanentSendError, match="another post"):
        channel(pds, tmp_path).publish(post(1))
    assert list(pds.state.records.values()) == [foreign]


def test_a_story_posted_before_the_database_was_rebuilt_is_not_posted_again(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    ch = channel(pds, tmp_path)
    first = ch.publish(post(1))
    # The same story in a new database (another row id), with a text from a newer template.
    again = ch.publish(post(1, text=f"New template: {post(1).url}", article_id=41))
    assert again == first
    assert pds.state.calls[PUT] == 1
    assert len(pds.state.records) == 1


def test_the_record_key_comes_from_site_story_and_channel_never_the_row_id() -> None:
    assert record_key(post(1)) == record_key(post(1, article_id=41))
    assert record_key(post(1)) != record_key(post(2))
    # Two sites posting to one account (or sharing a secret) keep their keys apart.
    assert record_key(post(1)) != record_key(post(1, site="digest.sister.example.org"))
    other_channel = dataclasses.replace(post(1), channel="bsky-fr")
    assert record_key(post(1)) != record_key(other_channel)


def test_record_keys_are_valid_tids_from_the_past() -> None:
    s32 = "234567abcdefghijklmnopqrstuvwxyz"
    for n in range(500):
        rkey = record_key(post(n))
        assert TID.match(rkey), rkey  # 13 base32-sortable characters, top bit 0
        value = sum(s32.index(c) << (5 * i) for i, c in enumerate(reversed(rkey)))
        micros = value >> 10
        assert datetime(2023, 1, 1, tzinfo=UTC) <= datetime.fromtimestamp(micros / 1e6, UTC)
        assert datetime.fromtimestamp(micros / 1e6, UTC) < datetime(2024, 3, 1, tzinfo=UTC)


def test_a_wrong_app_password_is_a_configuration_problem(pds: BlueskyPds, tmp_path: Path) -> None:
    with pytest.raises(TransportConfigError, match="app password"):
        channel(pds, tmp_path, password="wrong").publish(post(1))
    assert pds.state.records == {}


def test_a_rate_limit_carries_the_servers_reset_time(pds: BlueskyPds, tmp_path: Path) -> None:
    pds.state.rate_limit_next = 1
    with pytest.raises(RateLimited) as caught:
        channel(pds, tmp_path).publish(post(1))
    assert 0 < caught.value.retry_after <= 300  # from RateLimit-Reset, not a guess


def test_a_text_over_300_graphemes_is_refused_before_sending(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    with pytest.raises(PermanentSendError, match="300"):
        channel(pds, tmp_path).publish(post(1, text="é" * 301))
    assert pds.state.calls.get(PUT, 0) == 0


def test_300_graphemes_of_combined_characters_are_accepted(pds: BlueskyPds, tmp_path: Path) -> None:
    text = "e\u0301" * 290 + " 👩🏽‍✈️🇷🇼"  # 600 code points, 292 graphemes
    channel(pds, tmp_path).publish(post(1, text=text))
    assert json.dumps(list(pds.state.records.values())[0]["text"]) == json.dumps(text)


def test_preview_shows_the_record_publish_writes_without_logging_in_or_uploading(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    image = f"{pds.url}/img/small.png"
    shown = channel(pds, tmp_path).preview(post(7, image=image))
    assert pds.state.calls.get(CREATE, 0) == pds.state.calls.get(UPLOAD, 0) == 0
    assert not (tmp_path / "var" / "bluesky-bsky.session").exists()
    assert [(u.url, u.size, u.content_type) for u in shown.uploads] == [
        (image, len(PNG), "image/png")
    ]
    assert f"thumbnail: {image}, {len(PNG):,} bytes (image/png) would be uploaded" in "\n".join(
        shown.notes
    )
    external = shown.body["embed"]["external"]
    assert "thumb" not in external  # only an upload makes the blob it names
    assert shown.body["langs"] == ["en"]
    ranges = [(f["index"]["byteStart"], f["index"]["byteEnd"]) for f in shown.body["facets"]]
    # Bytes: 'é', 'è' are 2, the flag is 8; the link is shown without its scheme.
    assert ranges == [(30, 58), (59, 72), (73, 79)]
    assert "facet link: bytes 30-58 = 'newsroom.example.org/story-7'" in shown.notes
    assert "facet tag: bytes 59-72 = '#BorderGuards'" in shown.notes

    channel(pds, tmp_path).publish(post(7, image=image))
    (stored,) = pds.state.records.values()
    # The same record but for what only sending makes: the time and the uploaded blob.
    sent = {k: v for k, v in stored.items() if k != "createdAt"}
    sent["embed"] = {**stored["embed"], "external": dict(stored["embed"]["external"])}
    assert sent["embed"]["external"].pop("thumb")["size"] == len(PNG)
    assert sent == {k: v for k, v in shown.body.items() if k != "createdAt"}


def test_preview_says_when_an_image_would_be_left_out(pds: BlueskyPds, tmp_path: Path) -> None:
    image = f"{pds.url}/img/huge.jpg"
    shown = channel(pds, tmp_path).preview(post(8, image=image))
    assert shown.uploads == ()
    assert any(n.startswith(f"thumbnail: {image} left out") for n in shown.notes)


def test_check_creates_a_session_and_names_the_account_without_keeping_it(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    detail = channel(pds, tmp_path).check()
    assert detail == f"session for @newsroom.test (did:plc:newsroom0000000000000000) on {pds.url}"
    assert pds.state.calls == {CREATE: 1}  # no profile, no post
    assert not (tmp_path / "var" / "bluesky-bsky.session").exists()


def test_check_with_a_wrong_app_password_names_the_channel_and_the_refusal(
    pds: BlueskyPds, tmp_path: Path
) -> None:
    with pytest.raises(TransportConfigError) as refused:
        channel(pds, tmp_path, password="wrong").check()
    message = str(refused.value)
    assert "channel 'bsky'" in message and "'newsroom.test'" in message
    assert "401 AuthenticationRequired: Invalid identifier or password" in message
