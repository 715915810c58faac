"""The webhook channel against a receiver on loopback that checks signatures."""

from __future__ import annotations

import dataclasses

import pytest

from newsbroadcast.channels.base import OutgoingPost, story_identity
from newsbroadcast.channels.webhook import WebhookChannel, idempotency_key
from newsbroadcast.errors import RateLimited, TransientSendError, TransportConfigError
from tests.webhook_receiver import WebhookReceiver

SECRET = "hook-secret-0123456789"
URL = "https://newsroom.example.org/kg-cohort?a=1&b=2"
SITE = "digest.newsroom.example.org"


def post(article_id: int = 1, guid: str | None = None) -> OutgoingPost:
    """The story ``guid`` (by default one per ``article_id``) as row ``article_id``."""
    return OutgoingPost(
        post_id=10 + article_id,
        article_id=article_id,
        channel="hook",
        text=f"Kyrgyz <border> guards & cohort {URL} #Women",
        url=URL,
        title="Kyrgyz border guards graduate",
        summary="<p>Thirty officers.</p>",
        image="https://newsroom.example.org/kg.jpg",
        story=story_identity(SITE, "newsroom", guid or f"story-{article_id}"),
    )


def channel(hook: WebhookReceiver, shape: str = "generic", secret: str = SECRET) -> WebhookChannel:
    return WebhookChannel("hook", url=hook.url, shape=shape, secret=secret, timeout=5)  # type: ignore[arg-type]


def test_generic_payload_is_signed_and_carries_the_post() -> None:
    with WebhookReceiver(SECRET) as hook:
        published = channel(hook).publish(post())
        (got,) = hook.state.accepted
    payload = got["payload"]
    assert payload["article_id"] == 1
    assert payload["post_id"] == 11
    assert payload["channel"] == "hook"
    assert payload["title"] == "Kyrgyz border guards graduate"
    assert payload["url"] == URL
    assert payload["text"] == post().text
    assert published.remote_id == "1001"


def test_a_wrong_secret_is_refused_by_the_receiver_and_is_a_configuration_problem() -> None:
    with WebhookReceiver(SECRET) as hook:
        with pytest.raises(TransportConfigError):
            channel(hook, secret="not-the-secret").publish(post())
        assert hook.state.refused == ["bad signature"]
        assert hook.state.accepted == []


def test_a_retry_carries_the_same_idempotency_key_so_the_receiver_drops_it() -> None:
    with WebhookReceiver(SECRET) as hook:
        ch = channel(hook)
        ch.publish(post())
        ch.publish(post())  # a retry after an answer that was lost
        ch.publish(post(2))
        assert hook.state.requests == 3
        assert [a["payload"]["article_id"] for a in hook.state.accepted] == [1, 2]


def test_a_story_met_again_in_a_rebuilt_database_carries_the_same_key() -> None:
    with WebhookReceiver(SECRET) as hook:
        channel(hook).publish(post(1, guid="kg-cohort"))
        # The site moved to a new database, where the same story is row 7.
        channel(hook).publish(post(7, guid="kg-cohort"))
        assert hook.state.requests == 2
        assert len(hook.state.accepted) == 1


def test_two_sites_sharing_a_receiver_get_different_keys() -> None:
    ours = post(1, guid="kg-cohort")
    sister = dataclasses.replace(
        ours, story=story_identity("digest.sister.example.org", "newsroom", "kg-cohort")
    )
    assert idempotency_key(ours) != idempotency_key(sister)
    assert idempotency_key(ours) == idempotency_key(post(7, guid="kg-cohort"))


def test_slack_shape_escapes_mrkdwn_and_marks_the_link() -> None:
    with WebhookReceiver(SECRET, answer_as="slack") as hook:
        published = channel(hook, "slack").publish(post())
        (got,) = hook.state.accepted
    assert got["payload"] == {
        "text": "Kyrgyz &lt;border&gt; guards &amp; cohort "
        "<https://newsroom.example.org/kg-cohort?a=1&amp;b=2> #Women"
    }
    assert published.remote_id == got["key"]  # Slack returns no id: the key stands for it


def test_discord_shape_has_an_embed_and_returns_the_message_id() -> None:
    with WebhookReceiver(SECRET, answer_as="discord") as hook:
        published = channel(hook, "discord").publish(post())
        (got,) = hook.state.accepted
    payload = got["payload"]
    assert payload["content"] == post().text
    assert payload["embeds"] == [
        {
            "title": "Kyrgyz border guards graduate",
            "url": URL,
            "description": "Thirty officers.",
            "thumbnail": {"url": "https://newsroom.example.org/kg.jpg"},
        }
    ]
    assert payload["allowed_mentions"] == {"parse": []}
    assert published.remote_id == "1001"
    assert channel(hook, "discord").limit == 2000


def test_busy_and_rate_limited_receivers_are_retried_later() -> None:
    with WebhookReceiver(SECRET) as hook:
        hook.state.fail_next = 1
        with pytest.raises(TransientSendError):
            channel(hook).publish(post())
        hook.state.rate_limit_next = 1
        with pytest.raises(RateLimited) as caught:
            channel(hook).publish(post())
        assert caught.value.retry_after == 42
        channel(hook).publish(post())
        assert len(hook.state.accepted) == 1
