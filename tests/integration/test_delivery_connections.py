"""Several SMTP connections, one thread: the dispatcher keeps every connection busy from
the thread that dispatches (dispatch/multiplex.py), never a thread per connection, and
one connection waiting on its server does not hold up the others."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import ReceivedMessage, SmtpSink


def send_edition(
    tmp_path: Path,
    port: int,
    count: int,
    *,
    connections: int,
    batch: int,
    engine: Engine | None = None,
    url: str | None = None,
) -> list[str]:
    """``count`` subscribers sent one edition through ``port`` (on ``engine``, or on a
    service's own engine for ``url``); their addresses."""
    if engine is not None:
        url = engine.url.render_as_string(False)
    assert url is not None
    config_path = write_site(
        tmp_path, url, port, smtp={"connections": connections}, email={"batch_size": batch}
    )
    service = service_for(config_path, engine)
    everyone = add_subscribers(service.engine, count)
    plan_edition(service)
    assert service.dispatch().sent == count
    return everyone


def test_connections_are_kept_busy_at_once_from_the_dispatching_thread(
    engine: Engine, tmp_path: Path
) -> None:
    threads_seen: set[str] = set()

    def look(_message: ReceivedMessage) -> None:
        # The sink runs in this process: every thread the dispatcher started is listed.
        threads_seen.update(t.name for t in threading.enumerate())

    # Each end of DATA waits 0.2 s for its reply: a sender that waited on one connection
    # at a time would never have two messages in flight.
    with SmtpSink(delay=0.2, on_data=look, pipelining=True) as sink:
        everyone = send_edition(tmp_path, sink.port, 12, connections=4, batch=3, engine=engine)
        assert sorted(sink.recipients()) == sorted(everyone)
        assert sink.connections == 4
        assert sink.most_in_flight >= 2
    assert not [name for name in threads_seen if name.startswith("delivery-")]


def test_more_connections_than_the_usual_database_pool_all_send(
    database_url: str, tmp_path: Path
) -> None:
    # Each connection holds a database connection through its batch, all in one thread:
    # with the pool's usual 5 + 10 the 16th would wait on the others, which cannot run.
    with SmtpSink(pipelining=True) as sink:
        everyone = send_edition(tmp_path, sink.port, 40, connections=16, batch=2, url=database_url)
        assert sorted(sink.recipients()) == sorted(everyone)
        assert sink.connections == 16


class SlowFirstGreeting:
    """A TCP front for ``port`` whose first connection reaches the server (and so gets its
    greeting) only once ``ready()`` is true, or after 10 s; the others pass at once."""

    def __init__(self, port: int, ready: Callable[[], bool]) -> None:
        self.target, self.ready = port, ready
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ready_when_greeted: bool | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for number in itertools.count():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client, number), daemon=True).start()

    def _serve(self, client: socket.socket, number: int) -> None:
        if number == 0:
            for _ in range(200):
                if self.ready():
                    break
                time.sleep(0.05)
            self.ready_when_greeted = self.ready()
        server = socket.create_connection(("127.0.0.1", self.target))
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=self._copy, args=(a, b), daemon=True).start()

    @staticmethod
    def _copy(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        # shutdown() wakes the accepting thread (close() alone leaves it blocked on Linux).
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def test_a_server_slow_to_greet_holds_up_only_its_own_connection(
    engine: Engine, tmp_path: Path
) -> None:
    with SmtpSink(pipelining=True) as sink:
        front = SlowFirstGreeting(sink.port, lambda: len(sink.messages) >= 3)
        try:
            everyone = send_edition(tmp_path, front.port, 20, connections=2, batch=5, engine=engine)
        finally:
            front.close()
        assert sorted(sink.recipients()) == sorted(everyone)
    # The other connection sent while this one still waited for its greeting.
    assert front.ready_when_greeted is True
