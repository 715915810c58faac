"""The `x` channel: ``tweepy.Client.create_tweet`` with OAuth 1.0a user context.

X takes no idempotency key. What makes a retry safe is that the text was rendered once and
stored when the post was planned, and every attempt sends exactly those characters: if an
earlier attempt was accepted (a timeout after the request left, a crash before we recorded
it), X refuses the repeat as duplicate content, and that refusal means "already posted".

Length is X's weighted count (twitter-text v3: NFC first, every URL 23, code points outside
the Latin and punctuation ranges and every emoji sequence 2; 280 at most), computed by the
``twitter-text-parser`` package; tests/unit/test_social_length.py holds the cases it must pass.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import requests
import tweepy
from twitter_text import parse_tweet

from newsbroadcast.channels.base import OutgoingPost, Payload, Published
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)

log = logging.getLogger("newsbroadcast.channels.x")

LIMIT = 280
DEFAULT_RATE_LIMIT_WAIT = 15 * 60.0  # X's windows are 15 minutes when it names no reset


def weighted_length(text: str) -> int:
    """The length X counts against its 280 limit."""
    return int(parse_tweet(text).weightedLength)


class _SessionWithTimeout(requests.Session):
    """tweepy passes no timeout: without one a silent server would hold a dispatcher (and
    its lease) forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(
        self, method: str, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class XChannel:
    limit = LIMIT

    def __init__(
        self,
        name: str,
        *,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.client = tweepy.Client(
            consumer_key=consumer_key,
            consumer_secret=consumer_secret,
            access_token=access_token,
            access_token_secret=access_token_secret,
            wait_on_rate_limit=False,  # a dispatcher must not sleep on a lease: RateLimited
        )
        self.client.session = _SessionWithTimeout(timeout)

    @property
    def session(self) -> requests.Session:
        """The HTTP session every request goes through (tests mount a transport on it)."""
        return self.client.session

    def measure(self, text: str) -> int:
        return weighted_length(text)

    def check(self) -> str:
        """Whose credentials these are (``GET /2/users/me``); posts nothing."""
        try:
            me = self.client.get_me(user_auth=True)
        except tweepy.Unauthorized as e:
            raise TransportConfigError(f"X rejected the credentials: {_reply(e)}") from e
        except (tweepy.HTTPException, requests.RequestException) as e:
            raise TransientSendError(f"cannot check the credentials with X: {e}") from e
        return f"credentials of @{me.data['username']}"

    def preview(self, post: OutgoingPost) -> Payload:
        return Payload("POST /2/tweets", tweet(post))

    def publish(self, post: OutgoingPost) -> Published:
        try:
            response = self.client.create_tweet(**tweet(post), user_auth=True)
        except tweepy.TooManyRequests as e:
            raise RateLimited(
                f"X rate limit reached on {self.name}",
                retry_after=_seconds_until_reset(e.response),
                reply=_reply(e),
            ) from e
        except tweepy.Forbidden as e:
            if _is_duplicate(e):
                # An earlier attempt of these exact characters went through: it is posted.
                # X does not say which tweet it is, so no remote id can be stored.
                log.info("post %s on %s: already on X (duplicate refused)", post.post_id, self.name)
                return Published(remote_id=None)
            raise PermanentSendError(f"X refused the post: {_reply(e)}", _reply(e)) from e
        except tweepy.Unauthorized as e:
            raise TransportConfigError(
                f"X rejected the credentials of channel {self.name!r}: check the consumer key "
                f"and secret and the access token and secret ({_reply(e)})",
                _reply(e),
            ) from e
        except tweepy.TwitterServerError as e:
            raise TransientSendError(f"X server error: {_reply(e)}", _reply(e)) from e
        except (tweepy.BadRequest, tweepy.NotFound) as e:
            raise PermanentSendError(f"X refused the post: {_reply(e)}", _reply(e)) from e
        except tweepy.HTTPException as e:
            raise TransientSendError(f"X answered {_reply(e)}", _reply(e)) from e
        except requests.RequestException as e:
            # A timeout may come after X accepted the post: the retry's duplicate refusal
            # settles it.
            raise TransientSendError(f"cannot reach X: {e}") from e
        data: dict[str, Any] = response.data or {}
        tweet_id = str(data["id"])
        return Published(tweet_id, f"https://x.com/i/web/status/{tweet_id}")


def tweet(post: OutgoingPost) -> dict[str, Any]:
    """The ``POST /2/tweets`` body (``create_tweet``'s arguments): the stored text, as is,
    so that a retry is refused as a duplicate when an earlier attempt went through."""
    return {"text": post.text}


def _is_duplicate(e: tweepy.HTTPException) -> bool:
    return any("duplicate" in m.lower() for m in e.api_messages)


def _reply(e: tweepy.HTTPException) -> str:
    detail = "; ".join(e.api_messages) or e.response.reason
    return f"{e.response.status_code} {detail}"


def _seconds_until_reset(response: requests.Response) -> float:
    reset = response.headers.get("x-rate-limit-reset")
    try:
        return max(float(reset) - time.time(), 1.0) if reset else DEFAULT_RATE_LIMIT_WAIT
    except ValueError:
        return DEFAULT_RATE_LIMIT_WAIT
