"""Sending due transactional emails (the double opt-in confirmation): through the digests'
transport, under the same rate limit and the one retry rule, each outcome recorded on its
row. They go before the deliveries of a pass: a person is waiting for them.
(Part of ``Dispatcher``.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    SendStatus,
    Subscriber,
    SubscriberStatus,
    TransactionalEmail,
)
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.errors import DeliveryError, NewsBroadcastError, TransportDown
from newsbroadcast.outbox import retry
from newsbroadcast.outbox.claim import claim, finish, release
from newsbroadcast.outbox.ratelimit import SendRateLimiter
from newsbroadcast.subscribers.confirmation import (
    confirmation_message,
    confirmation_message_id,
    replaced,
)
from newsbroadcast.subscribers.suppressions import is_suppressed
from newsbroadcast.subscribers.verp import envelope_sender
from newsbroadcast.transports.base import Envelope, Transport

log = logging.getLogger("newsbroadcast.dispatch")

# Claimed at once: sign-ups come one by one, a burst of them is still small.
BATCH = 50


class TransactionalSending:
    """The transactional side of ``Dispatcher``: what it relies on is set up there."""

    config: Config
    sessions: sessionmaker[Session]
    make_transport: Callable[[], Transport]
    templates: Callable[[], jinja2.Environment]
    clock: Callable[[], datetime]
    limiter: SendRateLimiter
    stopping: threading.Event
    _outages: dict[str, int]
    _decide: Callable[..., retry.Retry | retry.GiveUp]
    _outage_over: Callable[[str], None]
    _build_wait: Callable[[str], timedelta]
    _count: Callable[..., None]

    def send_transactional(self, deadline: float | None = None) -> DispatchReport:
        """Send the transactional emails due now (one claim of at most ``BATCH``); none
        past ``deadline`` (``time.monotonic()``)."""
        report = DispatchReport()
        if deadline is not None and time.monotonic() >= deadline:
            return report
        with self.sessions() as session:
            ids = claim(
                session, TransactionalEmail, self.clock(), self.config.scheduler.lease, BATCH
            )
            if not ids:
                return report
            rows = list(
                session.scalars(
                    select(TransactionalEmail)
                    .where(TransactionalEmail.id.in_(ids))
                    .order_by(TransactionalEmail.id)
                )
            )
            grant = self.limiter.take(len(rows))
            if grant.granted < len(rows):
                # Over the limit: the rest waits, unspent, until a slot frees up.
                retry_at = grant.retry_at or self.clock() + timedelta(seconds=1)
                release(session, TransactionalEmail, _ids(rows[grant.granted :]), retry_at)
                rows = rows[: grant.granted]
            ended: list[datetime] = []  # when each message that used a slot got its reply
            try:
                transport = self._open_transport(session, rows, report) if rows else None
                if transport is not None:
                    with transport:
                        self._send_transactional_rows(session, transport, rows, report, ended)
            finally:
                self.limiter.release(grant.slots, ended)
        if report.handled:
            log.info(
                "transactional emails: sent=%d retried=%d failed=%d skipped=%d",
                report.sent, report.retried, report.failed, report.skipped,
            )  # fmt: skip
        return report

    def _open_transport(
        self, session: Session, rows: list[TransactionalEmail], report: DispatchReport
    ) -> Transport | None:
        """The transport, or None when it cannot even be set up (settings a person must
        fix): then the claimed rows wait, unspent, instead of sitting out their lease."""
        try:
            return self.make_transport()
        except TransportDown as e:
            decision = self._decide("email", self.config.email, e, 0)
            assert isinstance(decision, retry.Retry)  # an outage never gives up
            release(
                session, TransactionalEmail, _ids(rows), decision.at,
                error=f"waiting for the server: {e}",
            )  # fmt: skip
            report.errors.append(f"transactional emails: {e}")
            log.warning("%s; transactional emails wait until %s", e, decision.at)
            return None

    def _send_transactional_rows(
        self,
        session: Session,
        transport: Transport,
        rows: list[TransactionalEmail],
        report: DispatchReport,
        ended: list[datetime],
    ) -> None:
        held_until: datetime | None = None  # when emails whose template failed try again
        for n, row in enumerate(rows):
            if self.stopping.is_set():
                release(session, TransactionalEmail, _ids(rows[n:]), self.clock())
                return
            sub = session.get(Subscriber, row.subscriber_id)
            now = self.clock()
            why_not = self._not_wanted(session, sub, row, now)
            if why_not is not None or sub is None:
                finish(session, row, SendStatus.skipped, self.clock(), error=why_not)
                self._count(transport, report, "skipped")
                continue
            message_id = confirmation_message_id(self.config, row.key)
            try:
                data = confirmation_message(
                    self.templates(), self.config, sub, now, row.expires_at, message_id
                )
            except SQLAlchemyError:
                raise  # the database's trouble, not the message's
            except Exception as e:
                # The template's fault (or the config's), not the message's: it waits for
                # the fix, no attempt spent; its link's expiry still ends it. The rest goes on.
                if held_until is None:  # one more failure in a row per batch, not per email
                    held_until = self.clock() + self._build_wait("build:confirmation")
                error = f"the confirmation template failed: {e}"
                release(session, TransactionalEmail, [row.id], held_until, error=error)
                self._count(
                    transport, report, "retry", error=f"transactional email {row.id}: {error}"
                )
                log.error(
                    "transactional email %s waits until %s: %s", row.id, held_until, error,
                    exc_info=None if isinstance(e, NewsBroadcastError) else e,
                )  # fmt: skip
                continue
            sender = envelope_sender(self.config, message_id)
            envelope = Envelope(sender, sub.email, data, message_id)
            # No transaction stays open while the server takes its time (on PostgreSQL an
            # idle one holds back vacuum and a connection slot), as on the delivery path.
            session.commit()
            try:
                try:
                    reply = transport.send(envelope)
                finally:
                    ended.append(self.clock())
            except DeliveryError as e:
                decision = self._decide("email", self.config.email, e, row.attempts)
                outcome = self._write_decision(session, row, e, decision)
                self._count(transport, report, outcome, error=f"transactional email {row.id}: {e}")
                if isinstance(e, TransportDown):
                    # The server is unwell: everything behind this one waits as well.
                    assert isinstance(decision, retry.Retry)  # an outage never gives up
                    release(session, TransactionalEmail, _ids(rows[n + 1 :]), decision.at)
                    log.warning("%s; transactional emails wait until %s", e, decision.at)
                    return
                log.warning("transactional email %s to subscriber %s: %s", row.id, sub.id, e)
            else:
                row.smtp_reply = reply
                row.message_id = message_id
                finish(session, row, SendStatus.sent, self.clock())
                self._count(transport, report, "sent")
                self._outage_over("email")
                self._outage_over("build:confirmation")
                log.info("%s email sent to subscriber %s", row.purpose, sub.id)

    def _not_wanted(
        self, session: Session, sub: Subscriber | None, row: TransactionalEmail, now: datetime
    ) -> str | None:
        """Why this confirmation must not go out any more, if it must not."""
        if sub is None:
            return "subscriber is gone"
        if sub.status != SubscriberStatus.pending:
            return f"subscriber is {sub.status}"
        if is_suppressed(session, sub.email):
            return "address is suppressed"
        if row.expires_at <= now:
            return "its link expired before it could be sent"
        if replaced(sub, row):
            return "a newer sign-up replaced it (its own email carries the link)"
        return None

    def _write_decision(
        self,
        session: Session,
        row: TransactionalEmail,
        error: DeliveryError,
        decision: retry.Retry | retry.GiveUp,
    ) -> str:
        row.attempts = decision.attempts
        row.smtp_reply = error.reply
        if retry.caused_by_message(error) or isinstance(decision, retry.GiveUp):
            row.refused_at = self.clock()
        if isinstance(decision, retry.GiveUp):
            finish(session, row, SendStatus.failed, self.clock(), error=decision.reason)
            return "failed"
        row.status = SendStatus.queued
        row.next_attempt_at = decision.at
        row.lease_until = None
        row.last_error = str(error)
        session.commit()
        return "retry"


def _ids(rows: list[TransactionalEmail]) -> list[int]:
    return [r.id for r in rows]
