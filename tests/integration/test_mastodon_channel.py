"""The `mastodon` channel against a loopback Mastodon: Mastodon.py's real code."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from newsbroadcast.channels.base import OutgoingPost, story_identity
from newsbroadcast.channels.mastodon import MastodonChannel, idempotency_key
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from tests.mastodon_server import TOKEN, MastodonServer

URL = "https://newsroom.example.org/kg-cohort?from=feed&lang=en"
SITE = "digest.newsroom.example.org"
STORY = story_identity(SITE, "newsroom", "kg-cohort")
POST = OutgoingPost(
    7, 3, "fedi", f"Kyrgyz border guards graduate\n\n{URL}", URL, "Kyrgyz", story=STORY
)


@pytest.fixture
def server() -> Iterator[MastodonServer]:
    with MastodonServer() as s:
        yield s


def channel_for(server: MastodonServer, **options: object) -> MastodonChannel:
    return MastodonChannel(
        "fedi", api_base_url=server.url, access_token=TOKEN, timeout=10.0, **options
    )  # type: ignore[arg-type]


def test_a_post_carries_its_options_and_its_key(server: MastodonServer) -> None:
    channel = channel_for(server, visibility="unlisted", language="fr", spoiler_text="Uniforms")
    published = channel.publish(POST)
    [status] = server.statuses
    assert published.remote_id == status["id"] and published.remote_url == status["url"]
    assert (status["text"], status["visibility"], status["language"], status["spoiler_text"]) == (
        POST.text,
        "unlisted",
        "fr",
        "Uniforms",
    )
    assert server.requests[-1].headers["idempotency-key"] == idempotency_key(POST)


def test_the_same_post_twice_is_one_status(server: MastodonServer) -> None:
    channel = channel_for(server)
    first, second = channel.publish(POST), channel.publish(POST)
    assert first == second and len(server.statuses) == 1
    other = dataclasses.replace(POST, story=story_identity(SITE, "newsroom", "other"))
    assert idempotency_key(other) != idempotency_key(POST)


def test_the_same_story_from_a_rebuilt_database_is_one_status(server: MastodonServer) -> None:
    channel_for(server).publish(POST)
    # The site moved to a new database: the story's rows are numbered anew.
    rebuilt = dataclasses.replace(POST, post_id=1, article_id=1)
    assert idempotency_key(rebuilt) == idempotency_key(POST)
    channel_for(server).publish(rebuilt)
    assert len(server.statuses) == 1


def test_two_sites_announcing_one_story_get_different_keys() -> None:
    sister = dataclasses.replace(
        POST, story=story_identity("digest.sister.example.org", "newsroom", "kg-cohort")
    )
    assert idempotency_key(sister) != idempotency_key(POST)


def test_the_instance_limit_is_read_once_and_counts_urls_as_23() -> None:
    with MastodonServer(max_characters=1000) as server:
        channel = channel_for(server, spoiler_text="CW: war")
        assert channel.limit == 1000 and channel.limit == 1000
        assert channel.measure("x https://example.org/" + "a" * 200) == 2 + 23 + 7
        assert server.instance_requests == 1


def test_429_waits_until_the_iso_8601_reset(server: MastodonServer) -> None:
    server.rate_limited = 1
    server.rate_limit_reset_in = timedelta(minutes=4)
    with pytest.raises(RateLimited) as caught:
        channel_for(server).publish(POST)
    assert 200 < caught.value.retry_after <= 242  # the Date header has whole seconds


def test_refusals(server: MastodonServer) -> None:
    with pytest.raises(PermanentSendError, match="422"):
        channel_for(server).publish(dataclasses.replace(POST, text="a" * 501))
    with pytest.raises(TransportConfigError):
        MastodonChannel("fedi", api_base_url=server.url, access_token="wrong").publish(POST)
    assert server.statuses == []


def test_an_ambiguous_post_within_the_hour_is_settled_by_its_key(server: MastodonServer) -> None:
    channel = MastodonChannel("fedi", api_base_url=server.url, access_token=TOKEN, timeout=0.5)
    server.hold_next_accept()
    with pytest.raises(TransientSendError):
        channel.publish(POST)
    assert server.accepted.wait(10)
    server.release()
    assert len(server.statuses) == 1  # it went through although we timed out
    retry = dataclasses.replace(POST, first_attempt_at=datetime.now(UTC) - timedelta(minutes=1))
    published = channel.publish(retry)
    assert len(server.statuses) == 1 and published.remote_id == server.statuses[0]["id"]


def test_an_ambiguous_post_older_than_the_hour_is_found_among_recent_statuses(
    server: MastodonServer,
) -> None:
    channel = channel_for(server)
    first = channel.publish(POST)
    server.forget_keys()  # an hour later the server no longer knows the key
    old = dataclasses.replace(POST, first_attempt_at=datetime.now(UTC) - timedelta(hours=2))
    assert channel.publish(old) == first
    assert len(server.statuses) == 1
    # Not there: it is posted.
    other = dataclasses.replace(
        old, article_id=9, url="https://newsroom.example.org/other", text="Other story"
    )
    assert channel.publish(other).remote_id != first.remote_id
    assert len(server.statuses) == 2


def test_check_names_the_account_and_the_limit(server: MastodonServer) -> None:
    assert channel_for(server).check() == "token of @newsroom; 500 characters per post"
    with pytest.raises(TransportConfigError):
        MastodonChannel("fedi", api_base_url=server.url, access_token="wrong").check()
    assert server.statuses == []


def test_preview_is_the_status_form_publish_posts(server: MastodonServer) -> None:
    fedi = channel_for(server, visibility="unlisted", language="rw", spoiler_text="Politics")
    shown = fedi.preview(POST)
    assert server.statuses == []  # a preview posts nothing
    assert shown.body == {
        "status": POST.text,
        "visibility": "unlisted",
        "language": "rw",
        "spoiler_text": "Politics",
    }
    assert f"Idempotency-Key: {idempotency_key(POST)}" in shown.notes
    fedi.publish(POST)
    (status,) = server.statuses
    received = {k: status["text" if k == "status" else k] for k in shown.body}
    assert received == shown.body


def test_preview_leaves_out_what_mastodon_py_leaves_out(server: MastodonServer) -> None:
    shown = channel_for(server).preview(POST)
    assert shown.body == {"status": POST.text, "visibility": "public"}
    assert "language: not sent (the account's default applies)" in shown.notes


def test_a_post_is_in_the_storys_language_else_the_channels(server: MastodonServer) -> None:
    channel = channel_for(server, language="en")
    channel.publish(dataclasses.replace(POST, language="fr-CA"))
    other = story_identity(SITE, "newsroom", "other")
    channel.publish(dataclasses.replace(POST, story=other, text="Another story"))
    # Mastodon takes ISO 639 codes: the region goes.
    assert [s["language"] for s in server.statuses] == ["fr", "en"]
