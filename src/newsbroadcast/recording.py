"""Recording each sent delivery, overlapped with the next message's envelope.

A delivery is recorded `sent` before the next message on its connection is accepted: that
is what makes a kill cost at most one duplicate per connection. On PostgreSQL the record
is a round trip to the server; instead of waiting for it before starting the next message,
the record goes out from a helper thread while the next envelope (MAIL FROM, RCPT TO) is
exchanged, and the dispatcher waits for it only before that message's DATA
(``Transport.send(before_data=…)``). The guarantee is unchanged, the round trip is hidden.

SQLite has no round trip to hide (and its connections belong to one thread), so there the
record is simply written in line.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from newsbroadcast.models import Delivery, SendStatus

_deliveries = Delivery.__table__
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


class SentRecorder:
    """Records sent deliveries on ``session``'s connection, one at a time.

    ``record`` may return before the row is written; ``settle`` waits until it is (and
    raises its error, if any). ``close`` settles the last one (``contextlib.closing``).
    """

    def __init__(self, session: Session, overlap: bool) -> None:
        """``overlap``: write from a helper thread. Only for a PostgreSQL session in
        autocommit, where each statement stands alone and the driver's connection (psycopg's
        is thread-safe) may carry it from another thread."""
        self._session = session
        self._pending: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        if overlap:
            connection = session.connection()
            compiled = RECORD_SENT.compile(dialect=connection.dialect)
            self._sql = str(compiled)
            self._defaults: dict[str, Any] = dict(compiled.params)
            self._driver = connection.connection.driver_connection
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="record")

    def record(self, delivery_id: int, at: datetime, reply: str, message_id: str) -> None:
        self.settle()
        params = {"b_id": delivery_id, "b_at": at, "b_reply": reply, "b_mid": message_id}
        if self._pool is None:
            self._session.execute(RECORD_SENT, params)
            self._session.commit()
        else:
            self._pending = self._pool.submit(self._write, {**self._defaults, **params})

    def _write(self, params: dict[str, Any]) -> None:
        with self._driver.cursor() as cursor:
            cursor.execute(self._sql, params, prepare=True)

    def settle(self) -> None:
        """Return once the last recorded send is in the database."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Settle the last record and stop the helper thread."""
        try:
            self.settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
