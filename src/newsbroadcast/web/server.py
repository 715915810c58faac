"""Running the app on uvicorn, for the CLI and for tests (a server in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["BackgroundServer", "serve"]


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve until Ctrl-C / SIGTERM."""
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)


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
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def bind(cls, host: str = "127.0.0.1") -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        return cls(sock)

    def start(self, app: ASGIApp) -> None:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", proxy_headers=False)
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
