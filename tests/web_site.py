"""A whole site for web tests: config, database, SMTP sink and the app on a real port.

with running_site(tmp_path, database_url) as site:
    httpx.get(site.url + "/subscribe")
    site.sink.messages  # what the app queued and a worker sent
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast import db
from newsbroadcast.config.model import Config
from newsbroadcast.service import Service
from newsbroadcast.web import create_app
from newsbroadcast.web.server import BackgroundServer
from tests import site
from tests.site import Clock
from tests.smtp_sink import SmtpSink

SECRET = "web-secret-0123456789abcdef"
OLD_SECRET = "old-secret-0123456789abcdef"


def site_config(tmp_path: Path, public_url: str, sink: SmtpSink, **sections: Any) -> Config:
    web = {
        "topics": ["Peacekeeping", "Border"],
        "languages": ["en", "fr"],
        "signups_per_client": 50,  # tests of the limit set their own
        **sections.pop("web", {}),
    }
    return site.site_config(
        tmp_path,
        site={"public_url": public_url, "secret": SECRET, "previous_secrets": [OLD_SECRET]},
        sources=[site.NEWSROOM_FEED],
        email=site.smtp_email(sink.port, **sections.pop("email", {})),
        digests=[site.DAILY, {**site.DAILY, "name": "weekly", "cron": "0 8 * * mon"}],
        web=web,
        **sections,
    )


@dataclass
class RunningSite:
    url: str
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    sink: SmtpSink
    clock: Clock

    def wait_for_mail(self, to: str, count: int = 1, within: float = 10.0) -> list[EmailMessage]:
        """The messages the sink got for ``to``, once there are ``count`` of them (the
        worker sends what the app queued). Fails if they do not come."""
        deadline = time.monotonic() + within
        while True:
            found = [m for m in self.sink.messages if to in m.recipients]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(found) >= count, f"{len(found)} message(s) to {to}, expected {count}"
        return [parse(m.data) for m in found]


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    m = re.search(r"https?://\S+/confirm/[A-Za-z0-9_-]+", body.get_content())
    assert m, "no confirmation link in the email"
    return m.group(0)


@contextmanager
def running_site(tmp_path: Path, database_url: str, **sections: Any) -> Iterator[RunningSite]:
    (tmp_path / "feed.xml").write_text("<rss version='2.0'><channel/></rss>", encoding="utf-8")
    with SmtpSink() as sink, BackgroundServer.bind() as server:
        config = site_config(tmp_path, server.url, sink, **sections)
        engine = db.make_engine(database_url)
        db.upgrade(engine)
        clock = Clock()
        server.start(create_app(config, engine=engine, clock=clock))
        try:
            with worker(Service(config, engine=engine, clock=clock)):
                yield RunningSite(server.url, config, engine, db.sessions(engine), sink, clock)
        finally:
            engine.dispose()


@contextmanager
def worker(service: Service) -> Iterator[None]:
    """A worker's transactional part, in a thread: the web app only queues its emails
    (confirmations), a worker next to `serve` sends them. Digests stay for the tests to
    dispatch themselves."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            service.dispatcher.send_transactional()
            stop.wait(0.05)

    thread = threading.Thread(target=loop, name="worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        service.dispatcher.stopping.set()
        thread.join()
