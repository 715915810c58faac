"""The base of the fake social-network APIs in tests/: a threaded HTTP server on 127.0.0.1
(port 0) whose subclass answers ``route(request)``, with faults on demand.

``hold_next_accept()`` makes the server keep the next accepted post's response back: it
signals ``accepted`` once the post is stored, then waits for ``release()`` (or gives up
after a while). That is the moment between "the server has it" and "we recorded it" where
a client times out, or a poster is killed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

HOLD_AT_MOST = 60.0  # seconds a held response waits for release() before giving up


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


class LoopbackApi:
    """Subclasses implement ``route``; ``url`` is where the server listens."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted = threading.Event()
        self._release = threading.Event()
        self._hold = False
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
                    hold = response.accepted and api._hold
                    if hold:
                        api._hold = False
                if hold:
                    api.accepted.set()
                    api._release.wait(HOLD_AT_MOST)
                body = response.body
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(response.status)
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timed out, or was killed) meanwhile

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def route(self, request: ApiRequest) -> ApiResponse:
        raise NotImplementedError

    def hold_next_accept(self) -> None:
        self._release.clear()
        self.accepted.clear()
        self._hold = True

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> LoopbackApi:
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
