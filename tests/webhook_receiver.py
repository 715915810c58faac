"""A webhook receiver on loopback that does what we tell receivers to do.

It verifies ``X-Newsbroadcast-Signature`` (HMAC-SHA256 of the raw body) in constant time
before reading the body, requires ``X-Newsbroadcast-Timestamp`` (and, for the generic shape,
the same ``sent_at`` inside the signed body), and drops a request whose ``Idempotency-Key``
it has seen (answering 200, as a receiver should). It answers like Slack (``ok`` as text)
or like Discord (the message, with its id, when called with ``?wait=true``).
``fail_next`` answers 503; ``rate_limit_next`` answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from tests.answer_hold import AnswerHold
from tests.loopback_api import ApiRequest, ApiResponse, LoopbackApi


@dataclass
class Receiver:
    secret: str
    answer_as: str = "generic"  # generic | slack | discord
    accepted: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    requests: int = 0
    refused: list[str] = field(default_factory=list)
    fail_next: int = 0
    rate_limit_next: int = 0
    # The server's own hold, shared so that tests can arm it here (hook.state.hold); the
    # state is only touched under the server's lock, so it needs none of its own.
    hold: AnswerHold = field(default_factory=AnswerHold)

    def handle(
        self, headers: dict[str, str], query: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes]:
        """``headers`` with lower-cased names, as ``ApiRequest`` has them."""
        self.requests += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, b"busy"
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429, b"slow down"
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-newsbroadcast-signature", ""), expected):
            self.refused.append("bad signature")
            return 401, b"bad signature"
        timestamp = headers.get("x-newsbroadcast-timestamp")
        key = headers.get("idempotency-key")
        if not timestamp or not timestamp.isdigit() or not key:
            self.refused.append("missing headers")
            return 400, b"missing timestamp or idempotency key"
        payload = json.loads(body)
        if self.answer_as == "generic" and payload.get("sent_at") != int(timestamp):
            self.refused.append("timestamp not signed")
            return 400, b"sent_at does not match the timestamp header"
        if key in self.keys:
            return 200, b'{"duplicate": true}'
        self.keys.add(key)
        self.accepted.append({"payload": payload, "key": key, "timestamp": int(timestamp)})
        message_id = str(1000 + len(self.accepted))
        if self.answer_as == "slack":
            return 200, b"ok"
        if self.answer_as == "discord":
            if query.get("wait") == ["true"]:
                return 200, json.dumps({"id": message_id, "content": payload["content"]}).encode()
            return 204, b""
        return 200, json.dumps({"id": message_id}).encode()


class WebhookReceiver(LoopbackApi):
    """``with WebhookReceiver("secret") as hook: hook.url …``; ``hook.state`` is the state."""

    methods = ("POST",)  # as before the port: anything else is the stdlib's 501

    def __init__(self, secret: str, answer_as: str = "generic") -> None:
        super().__init__()
        self.state = Receiver(secret, answer_as, hold=self.hold)
        self.url += "/hook"  # any path is served; this one is what the tests configure

    def route(self, request: ApiRequest) -> ApiResponse:
        receiver = self.state
        accepted = len(receiver.accepted)
        status, answer = receiver.handle(request.headers, request.query, request.body)
        return ApiResponse(
            status,
            answer,
            {"Retry-After": "42"} if status == 429 else {},
            accepted=len(receiver.accepted) > accepted,  # a duplicate key is not held
            # Slack's "ok" and the refusals are text, the rest JSON; 204 has no body to type.
            content_type=(
                None if not answer else "application/json" if answer[:1] == b"{" else "text/plain"
            ),
        )
