"""A loopback X API v2 (``POST /2/tweets``) that tweepy's real code talks to.

It verifies the OAuth 1.0a signature with oauthlib (against the URL the client signed,
https://api.twitter.com/2/tweets), refuses text over 280 weighted characters, refuses a
duplicate text with X's 403, and answers 429 with ``x-rate-limit-*`` headers on demand.

tweepy hard-codes its host, so tests route its ``requests.Session`` here with a transport
adapter mounted for https://api.twitter.com (``route_x_to``): the library runs unchanged.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import requests
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint
from requests.adapters import HTTPAdapter
from twitter_text import parse_tweet

from tests.loopback_api import ApiRequest, ApiResponse, LoopbackApi

X_HOST = "https://api.twitter.com"
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."

CREDENTIALS = {
    "consumer_key": "ck0123456789abcdefghijk",
    "consumer_secret": "cs0123456789abcdefghijklmnopqrstuvwxyz",
    "access_token": "at0123456789abcdefghijk",
    "access_token_secret": "as0123456789abcdefghijklmnopqrstuvwxyz",
}


class RouteTo(HTTPAdapter):
    """Sends what was addressed to X's host to ``base`` instead; the request (and the OAuth
    signature computed over X's URL) is otherwise untouched."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None and request.url.startswith(X_HOST)
        request.url = self.base + request.url[len(X_HOST) :]
        return super().send(request, **kwargs)


def route_x_to(session: requests.Session, base: str) -> None:
    session.mount(X_HOST, RouteTo(base))


class _Validator(RequestValidator):
    def __init__(self, server: XServer) -> None:
        super().__init__()
        self.server = server
        self.nonces: set[tuple[str, str]] = set()

    @property
    def nonce_length(self) -> tuple[int, int]:
        return 8, 64

    @property
    def client_key_length(self) -> tuple[int, int]:
        return 10, 64

    @property
    def access_token_length(self) -> tuple[int, int]:
        return 10, 64

    @property
    def dummy_client(self) -> str:
        return "dummyclient0123456789"

    @property
    def dummy_access_token(self) -> str:
        return "dummytoken0123456789"

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == self.server.credentials["consumer_key"]

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.server.credentials["consumer_secret"]

    def validate_timestamp_and_nonce(
        self, client_key: str, timestamp: str, nonce: str, request: Any, **kwargs: Any
    ) -> bool:
        if (timestamp, nonce) in self.nonces:
            return False  # a replayed request
        self.nonces.add((timestamp, nonce))
        return True

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return self.server.credentials["access_token_secret"]


class XServer(LoopbackApi):
    def __init__(self, credentials: dict[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = dict(credentials or CREDENTIALS)
        self.tweets: list[dict[str, str]] = []
        self.bad_signatures = 0
        self.rate_limited = 0  # answer this many next posts with 429
        self.rate_limit_reset_in = 600
        self.server_errors = 0  # answer this many next posts with 503
        self._ids = itertools.count(1861000000000000001)
        self._endpoint = SignatureOnlyEndpoint(_Validator(self))

    def __enter__(self) -> XServer:
        super().__enter__()
        return self

    def _limits(self, remaining: int) -> dict[str, str]:
        return {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(int(time.time()) + self.rate_limit_reset_in),
        }

    def route(self, request: ApiRequest) -> ApiResponse:
        if (request.method, request.path) not in (("POST", "/2/tweets"), ("GET", "/2/users/me")):
            return ApiResponse(404, {"title": "Not Found Error", "status": 404})
        valid, signed = self._endpoint.validate_request(
            X_HOST + request.path, request.method, request.body.decode(), request.headers
        )
        if not valid or signed.resource_owner_key != self.credentials["access_token"]:
            self.bad_signatures += 1
            return ApiResponse(
                401, {"title": "Unauthorized", "status": 401, "detail": "Unauthorized"}
            )
        if request.path == "/2/users/me":
            me = {"id": "2244994945", "name": "Newsroom", "username": "newsroom"}
            return ApiResponse(200, {"data": me})
        if self.rate_limited:
            self.rate_limited -= 1
            return ApiResponse(
                429, {"title": "Too Many Requests", "status": 429, "detail": "Too Many Requests"},
                self._limits(0),
            )  # fmt: skip
        if self.server_errors:
            self.server_errors -= 1
            return ApiResponse(503, {"title": "Service Unavailable", "status": 503})
        text = request.json().get("text", "")
        if not parse_tweet(text).valid:
            return ApiResponse(
                400,
                {
                    "title": "Invalid Request",
                    "status": 400,
                    "detail": "Your Tweet text is too long.",
                },
            )
        if any(t["text"] == text for t in self.tweets):
            return ApiResponse(
                403,
                {"title": "Forbidden", "status": 403, "type": "about:blank", "detail": DUPLICATE},
                self._limits(99),
            )
        tweet = {"id": str(next(self._ids)), "text": text}
        self.tweets.append(tweet)
        body = {"data": {**tweet, "edit_history_tweet_ids": [tweet["id"]]}}
        return ApiResponse(201, body, self._limits(99), accepted=True)
