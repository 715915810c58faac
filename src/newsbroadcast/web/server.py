"""Running the app on uvicorn, for the CLI and for tests (a server in a thread).

uvicorn's HTTP/1.1 protocol (h11) bounds the idle time between requests
(``timeout_keep_alive``) but not the time a client takes to send a request's headers: a
client sending one header line a second holds its connection, and one connection each, for
as long as it likes. ``GuardedH11Protocol`` adds that deadline at the protocol level, and a
cap on open connections, since an ASGI app only hears of a request once its headers are in.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.supervisors import Multiprocess

from newsbroadcast.config.model import CONFIG_ENV, Web

__all__ = [
    "BackgroundServer",
    "GuardedH11Protocol",
    "ServeOptions",
    "app_from_environment",
    "serve",
]


# Written straight to the socket: h11 can only answer a request it has read in full.
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
FULL = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
# After such an answer, how long what the client still sends is read and dropped before
# the connection is closed (see GuardedH11Protocol._answer_and_close).
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ServeOptions:
    """How `serve` runs: from the ``web:`` section, each overridable by a CLI flag."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    header_timeout: float = 10.0  # seconds for a request line and headers to arrive
    keepalive_timeout: float = 5.0  # seconds a connection may stay idle between requests
    max_connections: int = 1000  # open connections per worker; more are refused

    @classmethod
    def from_web(cls, web: Web, **overrides: Any) -> ServeOptions:
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(
            **{
                "workers": web.workers,
                "header_timeout": web.header_timeout.total_seconds(),
                "keepalive_timeout": web.keepalive_timeout.total_seconds(),
                "max_connections": web.max_connections,
                **given,
            }
        )


class ServeConfig(uvicorn.Config):
    """uvicorn's Config carrying our protocol's limits: the protocol is built from the
    config alone, and in each worker process from a pickled copy of it."""

    def __init__(self, app: ASGIApp | str, options: ServeOptions, **kwargs: Any) -> None:
        super().__init__(
            app,
            host=options.host,
            port=options.port,
            workers=options.workers,
            http=GuardedH11Protocol,
            # uvicorn reads X-Forwarded-* from 127.0.0.1 by default; the app does it from
            # web.trusted_proxies instead (web/security.py).
            proxy_headers=False,
            # An int in uvicorn's signature; any positive number of seconds works.
            timeout_keep_alive=max(1, math.ceil(options.keepalive_timeout)),
            # A worker importing the app on a busy machine can take more than uvicorn's 5 s
            # to answer its supervisor's first ping; it would be killed and started again.
            timeout_worker_healthcheck=30,
            **kwargs,
        )
        self.timeout_keep_alive = options.keepalive_timeout  # type: ignore[assignment]
        self.header_timeout = options.header_timeout
        self.max_connections = options.max_connections


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers (counted from the
    connection's start or from the first byte after the previous response) and a cap on
    open connections."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout: float | None = getattr(config, "header_timeout", None)
        self.max_connections: int | None = getattr(config, "max_connections", None)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._closing = False  # answered and closing: what still comes is dropped

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            self._answer_and_close(FULL)
            return
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._header_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the first byte of a next request on this connection
        super().data_received(data)

    def on_response_complete(self) -> None:
        self._disarm_header_deadline()  # the keep-alive timeout takes over
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self.header_timeout is not None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        # IDLE: h11 has not got a whole request line and headers yet. Once it has, the
        # request is the app's, and the deadline is over.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self._answer_and_close(TIMED_OUT)

    def _answer_and_close(self, answer: bytes) -> None:
        # Closing a socket with the client's bytes still unread makes the kernel send a
        # reset, which can destroy the answer before the client reads it. So: the answer,
        # then our side shut (the client reads it and sees the end), what still comes
        # dropped, and the close when the client closes or LINGER_SECONDS later.
        self._closing = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def serve(app: ASGIApp | str, options: ServeOptions) -> None:
    """Serve until Ctrl-C / SIGTERM. With ``options.workers`` > 1, ``app`` is an import
    string of a factory (``app_from_environment``): each worker process builds its own."""
    config = ServeConfig(app, options, log_level="info", factory=isinstance(app, str))
    server = uvicorn.Server(config)
    if config.workers > 1:
        if not isinstance(app, str):
            raise TypeError("several workers need the app as an import string")
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        server.run()


def app_from_environment() -> ASGIApp:
    """The app of the config at $NEWSBROADCAST_CONFIG, for a worker process of `serve`
    (the parent set it, and migrated the database before starting any)."""
    from newsbroadcast import db
    from newsbroadcast.config.model import load_config
    from newsbroadcast.runtime import logs
    from newsbroadcast.web.pages import create_app

    config = load_config(Path(os.environ[CONFIG_ENV]))
    logs.protect(config)
    return create_app(config, engine=db.make_engine(config.database_url))


class BackgroundServer:
    """uvicorn in a thread on an already bound socket (so port 0 works and the URL is
    known before the app is built)::

        with BackgroundServer.bind() as server:
            app = create_app(config_for(server.url))
            server.start(app)
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.host, self.port = str(host), int(port)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def bind(cls, host: str = "127.0.0.1") -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        return cls(sock)

    def start(self, app: ASGIApp, options: ServeOptions | None = None) -> None:
        config = ServeConfig(app, options or ServeOptions(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self._thread.start()
        # Wait for the server to accept connections (bounded, so a broken start fails).
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
