"""A loopback Mastodon API that Mastodon.py's real code talks to.

Serves ``/api/v2/instance`` (with configurable ``max_characters``), ``POST
/api/v1/statuses`` honouring ``Idempotency-Key`` (a repeat returns the status already made,
as Mastodon does for an hour; ``forget_keys()`` plays that hour passing), the account's
statuses, and ``X-RateLimit-*`` headers with an ISO 8601 reset, answering 429 on demand.
Lengths are counted the server's way, independently of our code: each URL as 23.
"""

from __future__ import annotations

import html
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.loopback_api import ApiRequest, ApiResponse, LoopbackApi

TOKEN = "mastodon-token-0123456789"
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")


def server_length(text: str) -> int:
    return len(_URL.sub("x" * 23, text))


class MastodonServer(LoopbackApi):
    def __init__(self, max_characters: int = 500, token: str = TOKEN) -> None:
        super().__init__()
        self.max_characters = max_characters
        self.token = token
        self.statuses: list[dict[str, Any]] = []  # oldest first
        self.keys: dict[str, dict[str, Any]] = {}
        self.instance_requests = 0
        self.rate_limited = 0  # answer this many next posts with 429
        self.rate_limit_reset_in = timedelta(minutes=4)
        self._ids = itertools.count(113000000000000001)
        self.account = {
            "id": "109000000000000001",
            "username": "newsroom",
            "acct": "newsroom",
            "display_name": "Newsroom",
            "url": "https://social.example.org/@newsroom",
            "created_at": "2024-01-01T00:00:00.000Z",
            "note": "",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": 0,
            "locked": False,
            "bot": True,
            "emojis": [],
            "fields": [],
        }

    def __enter__(self) -> MastodonServer:
        super().__enter__()
        return self

    def forget_keys(self) -> None:
        """What an hour does to the server's memory of Idempotency-Keys."""
        with self.lock:
            self.keys.clear()

    def _limits(self, remaining: int) -> dict[str, str]:
        reset = datetime.now(UTC) + self.rate_limit_reset_in
        return {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }

    def route(self, request: ApiRequest) -> ApiResponse:
        request.path = request.path.rstrip("/")  # Rails routes ignore a trailing slash
        if request.path == "/api/v2/instance" and request.method == "GET":
            self.instance_requests += 1
            return ApiResponse(200, self._instance(), self._limits(299))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return ApiResponse(401, {"error": "The access token is invalid"})
        if request.path == "/api/v1/statuses" and request.method == "POST":
            return self._post_status(request)
        if request.path == "/api/v1/accounts/verify_credentials":
            return ApiResponse(200, self.account, self._limits(299))
        if request.path == f"/api/v1/accounts/{self.account['id']}/statuses":
            limit = int(request.query.get("limit", ["20"])[0])
            newest_first = list(reversed(self.statuses))[: min(limit, 40)]
            return ApiResponse(200, newest_first, self._limits(299))
        return ApiResponse(404, {"error": "Record not found"})

    def _instance(self) -> dict[str, Any]:
        return {
            "domain": "social.example.org",
            "title": "Loopback",
            "version": "4.3.0",
            "source_url": "https://github.com/mastodon/mastodon",
            "description": "",
            "configuration": {
                "statuses": {
                    "max_characters": self.max_characters,
                    "max_media_attachments": 4,
                    "characters_reserved_per_url": 23,
                }
            },
        }

    def _post_status(self, request: ApiRequest) -> ApiResponse:
        if self.rate_limited:
            self.rate_limited -= 1
            return ApiResponse(429, {"error": "Too many requests"}, self._limits(0))
        key = request.headers.get("idempotency-key")
        if key and key in self.keys:
            return ApiResponse(200, self.keys[key], self._limits(298))
        params = request.form() if request.body else {}
        if "application/json" in request.headers.get("content-type", ""):
            params = {k: [v] for k, v in request.json().items()}
        text = params.get("status", [""])[0]
        spoiler = params.get("spoiler_text", [""])[0]
        if server_length(text) + len(spoiler) > (limit := self.max_characters):
            return ApiResponse(
                422,
                {"error": f"Validation failed: Text character limit of {limit} exceeded"},
            )
        status_id = str(next(self._ids))
        status = {
            "id": status_id,
            "uri": f"https://social.example.org/users/newsroom/statuses/{status_id}",
            "url": f"https://social.example.org/@newsroom/{status_id}",
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "content": to_html(text),
            "text": text,  # kept for tests; Mastodon only returns it on delete
            "visibility": params.get("visibility", ["public"])[0],
            "language": params.get("language", [None])[0],
            "spoiler_text": spoiler,
            "sensitive": bool(spoiler),
            "account": self.account,
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "emojis": [],
            "reblogs_count": 0,
            "favourites_count": 0,
            "replies_count": 0,
            "card": None,
            "poll": None,
        }
        self.statuses.append(status)
        if key:
            self.keys[key] = status
        return ApiResponse(200, status, self._limits(298), accepted=True)


def to_html(text: str) -> str:
    """Mastodon's rendering, roughly: escaped text, links as anchors, lines as <br>."""
    out, last = [], 0
    for m in _URL.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        url = html.escape(m.group(0))
        out.append(f'<a href="{url}" rel="nofollow noopener" target="_blank">{url}</a>')
        last = m.end()
    out.append(html.escape(text[last:]))
    return "<p>" + "".join(out).replace("\n", "<br />") + "</p>"
