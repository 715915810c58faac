"""The base of the fake social-network APIs in tests/: a threaded HTTP server on 127.0.0.1
(port 0) whose subclass answers ``route(request)``, with faults on demand.

``hold_next_accept()`` makes the server keep the next accepted post's response back: it
signals ``accepted`` once the post is stored, then waits for ``release()`` (or gives up
after a while). That is the moment between "the server has it" and "we recorded it" where
a client times out, or a poster is killed. The hold is an ``AnswerHold`` (``self.hold``), so
a subclass can hand the same object to a state whose tests arm it directly.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.answer_hold import AnswerHold

JSON = "application/json; charset=utf-8"


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class ApiResponse:
    status: int
    body: Any = None  # JSON-encoded unless bytes
    headers: dict[str, str] = field(default_factory=dict)
    accepted: bool = False  # a post was stored: a held response waits here
    # Each fake answers with the exact Content-Type its real service sends; None sends no
    # Content-Type at all (an empty answer, as the webhook receiver gives).
    content_type: str | None = JSON
    hang_up: bool = False  # close the connection unanswered: the outcome stays unknown


class LoopbackApi:
    """Subclasses implement ``route``; ``url`` is where the server listens."""

    # The methods routed; any other gets the stdlib's own 501, as a service without it.
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hold = AnswerHold()
        self.requests: list[ApiRequest] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = ApiRequest(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                with api.lock:
                    api.requests.append(request)
                    response = api.route(request)
                    hold = response.accepted and api.hold.take()
                if response.hang_up:
                    self.close_connection = True
                    return
                if hold:
                    api.hold.wait()
                body = response.body
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(response.status)
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    if response.content_type is not None:
                        self.send_header("Content-Type", response.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timed out, or was killed) meanwhile

        for method in self.methods:
            setattr(Handler, f"do_{method}", Handler._serve)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, request: ApiRequest) -> ApiResponse:
        raise NotImplementedError

    @property
    def accepted(self) -> threading.Event:
        return self.hold.accepted

    def hold_next_accept(self) -> None:
        # Cleared first so that one server can be held more than once.
        self.hold.released.clear()
        self.hold.accepted.clear()
        self.hold.arm()

    def release(self) -> None:
        self.hold.release()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
