"""The `x` channel against a loopback X API: tweepy's real code, a real OAuth 1.0a check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsbroadcast.channels.base import OutgoingPost
from newsbroadcast.channels.x import XChannel
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from tests.x_server import CREDENTIALS, XServer, route_x_to

URL = "https://newsroom.example.org/kg-cohort"


def post(text: str = f"Kyrgyz border guards graduate first women's cohort {URL}") -> OutgoingPost:
    return OutgoingPost(1, 1, "x", text, URL, "Kyrgyz border guards", story="site\nnews\nkg")


@pytest.fixture
def server() -> Iterator[XServer]:
    with XServer() as s:
        yield s


def channel_for(server: XServer, timeout: float = 10.0, **credentials: str) -> XChannel:
    channel = XChannel("x", **{**CREDENTIALS, **credentials}, timeout=timeout)
    route_x_to(channel.session, server.url)
    return channel


def test_a_post_is_signed_and_published(server: XServer) -> None:
    published = channel_for(server).publish(post())
    assert server.bad_signatures == 0
    assert server.tweets == [{"id": published.remote_id, "text": post().text}]
    assert published.remote_url == f"https://x.com/i/web/status/{published.remote_id}"


def test_a_wrong_secret_fails_the_signature_check(server: XServer) -> None:
    with pytest.raises(TransportConfigError, match="credentials"):
        channel_for(server, access_token_secret="not-the-secret-0123456789").publish(post())
    assert server.bad_signatures == 1 and server.tweets == []


def test_a_repeat_of_an_accepted_post_is_recorded_as_posted(server: XServer) -> None:
    channel = channel_for(server)
    channel.publish(post())
    again = channel.publish(post())  # X refuses duplicate content: it is already there
    assert again.remote_id is None
    assert len(server.tweets) == 1


def test_429_waits_until_the_rate_limit_reset(server: XServer) -> None:
    server.rate_limited = 1
    server.rate_limit_reset_in = 900
    with pytest.raises(RateLimited) as caught:
        channel_for(server).publish(post())
    assert 880 < caught.value.retry_after <= 900
    assert server.tweets == []


def test_server_errors_are_transient_and_overlong_text_permanent(server: XServer) -> None:
    server.server_errors = 1
    with pytest.raises(TransientSendError):
        channel_for(server).publish(post())
    with pytest.raises(PermanentSendError):
        channel_for(server).publish(post("a" * 285))
    assert server.tweets == []


def test_a_timeout_after_the_server_accepted_is_settled_by_resending_the_same_text(
    server: XServer,
) -> None:
    channel = channel_for(server, timeout=0.5)
    server.hold_next_accept()
    with pytest.raises(TransientSendError, match="cannot reach X"):
        channel.publish(post())
    assert server.accepted.wait(10)
    server.release()
    assert len(server.tweets) == 1  # it went through although we timed out
    settled = channel.publish(post())
    assert settled.remote_id is None
    assert len(server.tweets) == 1


def test_check_names_the_account_and_posts_nothing(server: XServer) -> None:
    assert channel_for(server).check() == "credentials of @newsroom"
    with pytest.raises(TransportConfigError):
        channel_for(server, consumer_secret="wrong-secret-0123456789").check()
    assert server.tweets == []
