"""A database outage is said in one line when it starts and one when it ends; the worker
and the scheduler's steps wait it out without a traceback per run.

The service reaches a real PostgreSQL through a TCP proxy that the test cuts (every
connection dropped, new ones refused) and restores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.engine import make_url

from newsbroadcast import db
from newsbroadcast.dispatch.worker import run_worker
from newsbroadcast.runtime.scheduler import run_forever
from newsbroadcast.service import Service
from tests.conftest import postgres_schema
from tests.site import make_config
from tests.tcp_proxy import TcpProxy


def wait_for(what: str, condition: Callable[[], object], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def proxied() -> Iterator[tuple[str, TcpProxy]]:
    """A migrated PostgreSQL schema and its URL through a proxy the test can cut."""
    with postgres_schema() as url:
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        try:
            yield parsed.set(port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def start_worker(service: Service) -> Callable[[], None]:
    thread = threading.Thread(target=run_worker, args=(service,), daemon=True)
    thread.start()

    def stop() -> None:
        service.dispatcher.stopping.set()
        thread.join(60)

    return stop


def start_scheduler(service: Service) -> Callable[[], None]:
    stopping = threading.Event()
    thread = threading.Thread(target=run_forever, args=(service, stopping), daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(60)

    return stop


@pytest.mark.parametrize("start", [start_worker, start_scheduler], ids=["worker", "scheduler"])
def test_an_outage_is_one_line_when_it_starts_and_one_when_it_ends(
    proxied: tuple[str, TcpProxy],
    start: Callable[[Service], Callable[[], None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proxy = proxied
    config = make_config(database={"url": url}, scheduler={"dispatch_every": "0.05s"})
    service = Service(config)
    caplog.set_level(logging.DEBUG, logger="newsbroadcast")

    def logged(text: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith(text)]

    stop = start(service)
    try:
        wait_for("the start", lambda: logged("worker started") or logged("running: "))
        proxy.cut()
        wait_for("the outage to be noticed", lambda: logged("database unreachable: "))
        # Several more runs come and go while it lasts, each waiting quietly.
        wait_for("runs during the outage", lambda: len(logged("database still unreachable")) >= 5)
        proxy.restore()
        wait_for("the database to be back", lambda: logged("database reachable again"))
    finally:
        stop()
        service.close()

    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in loud] == [logged("database unreachable: ")[0].getMessage()]
    assert loud[0].getMessage().endswith("; retrying")
    assert "Connection refused" in loud[0].getMessage()
    assert len(logged("database reachable again")) == 1
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
