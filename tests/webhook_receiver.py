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
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.answer_hold import AnswerHold


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
    hold: AnswerHold = field(default_factory=AnswerHold)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: Any, query: dict[str, list[str]], body: bytes) -> tuple[int, bytes]:
        self.requests += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, b"busy"
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429, b"slow down"
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("X-Newsbroadcast-Signature", ""), expected):
            self.refused.append("bad signature")
            return 401, b"bad signature"
        timestamp = headers.get("X-Newsbroadcast-Timestamp")
        key = headers.get("Idempotency-Key")
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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver = self.server.receiver
        with receiver.lock:
            accepted = len(receiver.accepted)
            status, answer = receiver.handle(
                self.headers, parse_qs(urlsplit(self.path).query), body
            )
            held = len(receiver.accepted) > accepted and receiver.hold.take()
        if held:
            receiver.hold.wait()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "42")
        if answer:
            self.send_header(
                "Content-Type", "application/json" if answer[:1] == b"{" else "text/plain"
            )
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: Receiver) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.receiver = receiver


class WebhookReceiver:
    """``with WebhookReceiver("secret") as hook: hook.url …``; ``hook.state`` is the state."""

    def __init__(self, secret: str, answer_as: str = "generic") -> None:
        self.state = Receiver(secret, answer_as)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
