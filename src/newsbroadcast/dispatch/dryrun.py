"""`run --dry-run`: every step for real, inside one database transaction that is rolled back.

Polling, planning, fan-out, claiming and rendering all run as usual, so a dry run finds
every problem a real run would; but each message goes to ``DryTransport`` and each post to
``DryChannel``, which keep a count and send nothing, and ``close`` rolls the transaction
back: no row, no cursor, no outbox file is left behind.

The steps' own commits become savepoints (SQLAlchemy's "join an external transaction"),
which SQLite supports only when pysqlite leaves transaction control to SQLAlchemy; the
engine made here does that. While a dry run writes, SQLite keeps other writers waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast import db
from newsbroadcast.channels.base import Channel, OutgoingPost, Published
from newsbroadcast.transports.base import Envelope

log = logging.getLogger("newsbroadcast.dryrun")


class DryRunDatabase:
    """One connection, one transaction, rolled back by ``close``."""

    def __init__(self, url: str | URL) -> None:
        self.engine: Engine = db.make_engine(
            url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        )
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _no_pysqlite_transactions(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None

            @event.listens_for(self.engine, "begin")
            def _begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN")

        self.connection = self.engine.connect()
        self.transaction = self.connection.begin()
        self.sessions: sessionmaker[Session] = sessionmaker(
            bind=self.connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

    def close(self) -> None:
        """Undo everything the dry run wrote."""
        try:
            if self.transaction.is_active:
                self.transaction.rollback()
        finally:
            self.connection.close()
            self.engine.dispose()


class Tally:
    """What a dry run would have sent (thread-safe: delivery threads share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.posts = 0

    def message(self, size: int) -> None:
        with self._lock:
            self.messages += 1
            self.bytes += size

    def post(self) -> None:
        with self._lock:
            self.posts += 1


class DryTransport:
    """Takes each rendered message and sends nothing."""

    name = "dry-run"

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def __enter__(self) -> DryTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def send(self, envelope: Envelope, before_data: Callable[[], None] | None = None) -> str:
        if before_data is not None:
            before_data()
        self.tally.message(len(envelope.data))
        log.debug("dry run: not sent to <%s>", envelope.recipient)
        return "250 dry run: not sent"


class DryChannel:
    """A channel's length rule, without its network: posts are counted, not published."""

    def __init__(self, real: Channel, tally: Tally) -> None:
        self.name = real.name
        self.limit = real.limit
        self._real = real
        self.tally = tally

    def measure(self, text: str) -> int:
        return self._real.measure(text)

    def publish(self, post: OutgoingPost) -> Published:
        self.tally.post()
        log.debug("dry run: not posted on %s: post %s", self.name, post.post_id)
        return Published(remote_id=None)
