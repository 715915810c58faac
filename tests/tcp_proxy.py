"""A TCP proxy on loopback that a test can cut and restore: the database "goes away" for
everything connected through it, as when a server or the network between fails."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream``. ``cut()`` closes every connection and
    stops listening (new connections are refused); ``restore()`` listens again on the
    same port. ``stall()`` keeps every connection open but forwards nothing more, as a
    half-open connection does."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._flowing = threading.Event()
        self._flowing.set()
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        for sock in [listener, *doomed]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._flowing.set()  # stalled pumps wake to the closed sockets and end

    close = cut

    def stall(self) -> None:
        self._flowing.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        other = {a: b, b: a}
        with selectors.DefaultSelector() as sel:
            for sock in (a, b):
                sock.setblocking(True)
                sel.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in sel.select():
                        self._flowing.wait()
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        other[key.fileobj].sendall(data)  # type: ignore[index]
            except (OSError, ValueError):
                return
            finally:
                for sock in (a, b):
                    with self._lock:
                        self._sockets.discard(sock)
                    sock.close()
