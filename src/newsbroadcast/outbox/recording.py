"""Recording each sent delivery, overlapped with the next message's envelope.

A delivery is recorded `sent` before the next message on its connection is accepted: that
is what makes a kill cost at most one duplicate per connection. On PostgreSQL the record
is a round trip to the server; instead of waiting for it before starting the next message,
the statement is sent without waiting (libpq's asynchronous API, on the session's own
connection) while the next envelope (MAIL FROM, RCPT TO) is exchanged, and the dispatcher
waits for its result only before that message's DATA (``Transport.send(before_data=…)``).
The guarantee is unchanged, the round trip is hidden, and no thread is involved: the wait
is a step (newsbroadcast/waits.py), so while PostgreSQL works the dispatcher's thread
serves its other connections.

SQLite has no round trip to hide, so there the record is simply written in line; on a
connection in autocommit straight through the sqlite3 module with the statement compiled
once, since SQLAlchemy's work per execution costs more than SQLite's own. psycopg is
imported only for a PostgreSQL session: a SQLite install does not have it.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, update
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as pysqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from newsbroadcast.db.models import Delivery, SendStatus
from newsbroadcast.waits import Steps, Wait, finish

# Declarative types __table__ as any FromClause; a class mapped by __tablename__ has a Table.
_deliveries = cast(Table, Delivery.__table__)
# Built once: recording a send is the statement run most, once per message.
RECORD_SENT = (
    update(_deliveries)
    .where(_deliveries.c.id == bindparam("b_id"))
    .values(
        status=SendStatus.sent.value,
        sent_at=bindparam("b_at"),
        smtp_reply=bindparam("b_reply"),
        message_id=bindparam("b_mid"),
        lease_until=None,
        last_error=None,
    )
)
# The same statement for the asynchronous path, compiled once with PostgreSQL's own
# placeholders ($1…, each cast to its column's type) to be prepared on the connection.
_POSTGRES = RECORD_SENT.compile(dialect=psycopg_dialect(paramstyle="numeric_dollar"))
_PREPARED = b"newsbroadcast_record_sent"
# And for SQLite's own module: "?" placeholders, the time bound as SQLAlchemy would store it.
_SQLITE_DIALECT = pysqlite_dialect()
_SQLITE = RECORD_SENT.compile(dialect=_SQLITE_DIALECT)
_SQLITE_SQL, _SQLITE_ORDER = str(_SQLITE), _SQLITE.positiontup or []
_SQLITE_TIME = _deliveries.c.sent_at.type.bind_processor(_SQLITE_DIALECT)
_ALREADY_PREPARED, _NOT_PREPARED = b"42P05", b"26000"
# How long one record may wait for PostgreSQL. Generous (a busy server answers in far less),
# but finite: a half-open connection must not hold the worker while its claims expire.
RECORD_WAIT = 60.0


class RecordError(Exception):
    """PostgreSQL refused to record a send (the message went out: it will go again)."""


class SentRecorder:
    """Records sent deliveries on ``session``'s connection, one at a time.

    ``record`` may return before the row is written; ``settle`` waits until it is (and
    raises its error, if any). Any other statement on the session settles first, so the
    session stays usable as usual. ``close`` settles the last one (``contextlib.closing``).
    """

    def __init__(self, session: Session, overlap: bool, within: float = RECORD_WAIT) -> None:
        """``overlap``: write asynchronously. Only for a PostgreSQL (psycopg) session in
        autocommit, where each statement stands alone. ``within``: seconds each exchange
        with the server may take before the record fails (``RecordError``)."""
        self._session = session
        self._within = within
        self._deadline = 0.0
        self._dropped: RecordError | None = None  # the connection was given up on
        self._pgconn: Any = None
        self._pq: Any = None
        self._pending: list[bytes | None] | None = None
        self._connection: Connection | None = None
        self._sqlite: Any = None  # the sqlite3 connection, when written to directly
        if not overlap:
            connection = session.connection()
            autocommit = connection.get_execution_options().get("isolation_level")
            if connection.dialect.name == "sqlite" and autocommit == "AUTOCOMMIT":
                self._sqlite = connection.connection.driver_connection
        if overlap:
            from psycopg import pq  # PostgreSQL-only (see the module's docstring)

            self._pq = pq
            connection = session.connection()
            dbapi = connection.connection
            # Typed Optional for an invalidated pool entry; a checked-out connection has one.
            self._pgconn = dbapi.driver_connection.pgconn  # type: ignore[union-attr]
            if _PREPARED not in dbapi.info:  # the pool keeps this dict per connection
                self._prepare()
                dbapi.info[_PREPARED] = True
            self._connection = connection
            event.listen(connection, "before_cursor_execute", self._before_statement)

    def record(self, delivery_id: int, at: datetime, reply: str, message_id: str) -> None:
        if self._dropped is not None:
            raise self._dropped
        self.settle()
        params = {"b_id": delivery_id, "b_at": at, "b_reply": reply, "b_mid": message_id}
        if self._sqlite is not None:
            # In autocommit the sqlite3 module commits the statement itself.
            params["b_at"] = _SQLITE_TIME(at) if _SQLITE_TIME else at
            bound = {**_SQLITE.params, **params}
            values = [bound[k] for k in _SQLITE_ORDER]
            try:
                self._sqlite.execute(_SQLITE_SQL, values)
            except sqlite3.Error as e:  # as SQLAlchemy would raise it (outages are told apart)
                raise DBAPIError.instance(_SQLITE_SQL, values, e, sqlite3.Error) from e
            return
        if self._pgconn is None:
            self._session.execute(RECORD_SENT, params)
            self._session.commit()
            return
        # Bound here, not by SQLAlchemy's UTCDateTime: the column holds naive UTC.
        params["b_at"] = at.astimezone(UTC).replace(tzinfo=None)
        bound = {**_POSTGRES.params, **params}
        self._pending = [_text(bound[name]) for name in _POSTGRES.positiontup or ()]
        self._send(self._pending)

    def settle(self) -> None:
        """Return once the last recorded send is in the database."""
        finish(self.settle_steps())

    def settle_steps(self) -> Steps[None]:
        """``settle`` as steps (newsbroadcast/waits.py): yields while PostgreSQL works."""
        values = self._pending
        if values is None:
            return
        # Pending until its result is read: a step abandoned at this wait leaves it to
        # close(), which reads it, so the connection goes back to the pool clean.
        error = yield from self._result()
        if error is not None and self._sqlstate(error) == _NOT_PREPARED:
            # psycopg deallocates every prepared statement after a ROLLBACK on the
            # connection: prepare it again and record once more, still before DATA.
            self._prepare()
            self._send(values)
            error = yield from self._result()
        self._pending = None
        if error is not None:
            raise RecordError(f"recording a sent delivery failed: {_describe(error)}")

    def _send(self, values: list[bytes | None]) -> None:
        self._deadline = time.monotonic() + self._within
        self._pgconn.send_query_prepared(_PREPARED, values)
        self._flush()

    def _prepare(self) -> None:
        """Prepare the statement on this connection unless it already is."""
        self._deadline = time.monotonic() + self._within
        self._pgconn.send_prepare(_PREPARED, str(_POSTGRES).encode())
        self._flush()
        error = finish(self._result())
        if error is not None and self._sqlstate(error) != _ALREADY_PREPARED:
            raise RecordError(f"preparing to record sent deliveries failed: {_describe(error)}")

    def _flush(self) -> None:
        """Push out what libpq still holds (the connection is non-blocking)."""
        while self._pgconn.flush():
            finish(self._wait(write=True))

    def _result(self) -> Steps[Any]:
        """Read every result of the statement in flight; its error result, if any."""
        pgconn = self._pgconn
        error = None
        while True:
            pgconn.consume_input()
            while pgconn.is_busy():
                yield from self._wait(write=False)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:  # all read: the connection is free for the next statement
                return error
            if result.status == self._pq.ExecStatus.FATAL_ERROR:
                error = result

    def _wait(self, write: bool) -> Steps[None]:
        """Wait until the socket is ready, or fail the record at its deadline. The
        statement is then still in flight, so the connection is of no further use: it is
        invalidated (closed, never back in the pool; the session's next statement, if any,
        gets a new one). The delivery stays claimed: once its lease ends it is sent again
        (the duplicate this design allows for), unless the record did reach the server."""
        if (yield Wait(self._pgconn.socket, write, self._deadline)):
            return
        if self._connection is not None:
            event.remove(self._connection, "before_cursor_execute", self._before_statement)
            self._connection.invalidate()
            self._connection.rollback()  # else every later statement raises PendingRollback
            self._connection = None
        self._pending = None  # gone with the connection: nothing is left to read
        self._dropped = RecordError(
            f"recording a sent delivery failed: no answer from PostgreSQL within "
            f"{self._within:g}s; the connection is dropped and the delivery stays claimed"
        )
        raise self._dropped

    def _sqlstate(self, error: Any) -> bytes | None:
        return error.error_field(self._pq.DiagnosticField.SQLSTATE)

    def _before_statement(self, *_: Any) -> None:
        self.settle()

    def close(self) -> None:
        """Settle the last record and stop watching the session's statements."""
        try:
            self.settle()
        finally:
            if self._connection is not None:
                event.remove(self._connection, "before_cursor_execute", self._before_statement)
                self._connection = None


def _text(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text format (None is NULL)."""
    if value is None:
        return None
    return (value.isoformat(" ") if isinstance(value, datetime) else str(value)).encode()


def _describe(result: Any) -> str:
    return str(result.error_message.decode("utf-8", "replace").strip())
