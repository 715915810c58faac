"""Sending due deliveries: each connection claims a batch, sends it message after message,
records each outcome before the next message is accepted. (Part of ``Dispatcher``.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Engine,
    any_,
    case,
    exists,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    Delivery,
    Edition,
    EditionStatus,
    SendStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsbroadcast.dispatch.multiplex import run_together
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.errors import (
    DeliveryError,
    NewsBroadcastError,
    PermanentSendError,
    TransportDown,
)
from newsbroadcast.outbox import retry
from newsbroadcast.outbox.autopause import note_refusal
from newsbroadcast.outbox.claim import claim, release
from newsbroadcast.outbox.ratelimit import SendRateLimiter
from newsbroadcast.outbox.recording import SentRecorder
from newsbroadcast.outbox.steering import edition_articles
from newsbroadcast.render.mime import PreparedEdition, make_message_id
from newsbroadcast.render.views import EditionView, Recipient, edition_view
from newsbroadcast.runtime import metrics
from newsbroadcast.runtime.failures import clear_failure, record_failure
from newsbroadcast.subscribers.bounces import BounceKind, classify, reply_status
from newsbroadcast.subscribers.lifecycle import record_bounce
from newsbroadcast.subscribers.suppressions import email_hash
from newsbroadcast.subscribers.verp import envelope_sender
from newsbroadcast.transports.base import Envelope, Transport, send_steps_of
from newsbroadcast.waits import Steps, Wait, finish

log = logging.getLogger("newsbroadcast.dispatch")


# Seconds between two looks at whether an edition was paused or cancelled meanwhile (a
# query; per message it would cost more than the message itself).
HALT_CHECK_SECONDS = 0.5
# Rows the first look of a batch covers (see _send_rows).
LOOK_AHEAD = 64


class EmailSending:
    """The email side of ``Dispatcher``: what it relies on is set up there."""

    config: Config
    sessions: sessionmaker[Session]
    make_transport: Callable[[], Transport]
    prepare: Callable[[str, EditionView, str], PreparedEdition]
    clock: Callable[[], datetime]
    limiter: SendRateLimiter
    stopping: threading.Event
    _prepared: dict[tuple[int, str], PreparedEdition]
    _prepared_lock: threading.Lock
    _unrendered: set[str]  # digests with a render failure this dispatcher recorded
    _outages: dict[str, int]
    _postgres: bool
    _decide: Callable[..., retry.Retry | retry.GiveUp]
    _outage_over: Callable[[str], None]
    _build_wait: Callable[[str], timedelta]

    def send_deliveries(self, deadline: float | None = None) -> DispatchReport:
        """Send due deliveries until none is due (or ``stopping`` is set, or a batch ends
        past ``deadline``, a ``time.monotonic()`` value).

        ``email.smtp.connections`` connections work at once, each with its own transport
        and database session, messages back to back on each. Over SMTP they all run in
        this thread (dispatch/multiplex.py); a transport that can only block gets a thread
        per connection.
        """
        pool = self.config.senders
        reports = [DispatchReport() for _ in range(pool)]
        transports = [self.make_transport() for _ in range(pool)]
        connections = [
            self._connection_steps(transport, report, deadline)
            for transport, report in zip(transports, reports, strict=True)
        ]
        failed: list[BaseException] = []
        if pool == 1:
            finish(connections[0], sleep=self.stopping.wait)
        elif all(send_steps_of(t) for t in transports):
            failed.extend(run_together(connections, self.stopping))
        else:
            # A transport that can only block gets a thread per connection.
            def work(connection: Steps[None]) -> None:
                try:
                    finish(connection, sleep=self.stopping.wait)
                except BaseException as e:  # re-raised below, in the caller's thread
                    failed.append(e)

            threads = [
                threading.Thread(target=work, args=(c,), name=f"delivery-{i}", daemon=True)
                for i, c in enumerate(connections)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if failed:
            raise failed[0]
        report = DispatchReport()
        for r in reports:
            report.add(r)
        if report.handled:
            log.info(
                "deliveries: sent=%d retried=%d failed=%d skipped=%d",
                report.sent,
                report.retried,
                report.failed,
                report.skipped,
            )
        return report

    def _connection_steps(
        self, transport: Transport, report: DispatchReport, deadline: float | None
    ) -> Steps[None]:
        """One connection's work: claim a batch, send it, record each outcome; again, until
        nothing is due or, after a whole batch, ``deadline`` has passed."""
        with transport:
            while not self.stopping.is_set() and (yield from self._send_batch(transport, report)):
                if deadline is not None and time.monotonic() >= deadline:
                    return

    def _send_batch(self, transport: Transport, report: DispatchReport) -> Steps[bool]:
        """Claim and send one batch. False when this connection should stop for now:
        nothing due, the server is down, or the rate limit frees no slot soon."""
        size = self.config.email.batch_size
        if self.limiter.enabled:
            size = max(1, min(size, self.limiter.available()))
        # Every statement of a batch stands alone (each is atomic on its own), so the batch
        # runs in autocommit: a recorded send is one statement and, on PostgreSQL, one round
        # trip instead of three (BEGIN, UPDATE, COMMIT).
        bind = self.sessions.kw["bind"]
        if not isinstance(bind, Engine):  # a dry run, all inside one transaction to roll back
            with self.sessions() as session:
                return (yield from self._claim_and_send(session, size, transport, report))
        with (
            bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            Session(connection, expire_on_commit=False) as session,
        ):
            if not self._postgres:
                return (yield from self._claim_and_send(session, size, transport, report))
            # Nor does a recorded send wait for its WAL flush, which would cost more than
            # the SMTP transaction: a killed worker loses nothing this way (the commit is in
            # the server's memory); only a crash of PostgreSQL itself may forget the last
            # few hundred milliseconds of records, and those messages are then sent again
            # with the same Message-ID. SQLite makes the same trade with synchronous=NORMAL
            # (see db/engine.py).
            session.execute(text("SET synchronous_commit TO off"))
            try:
                return (
                    yield from self._claim_and_send(session, size, transport, report, overlap=True)
                )
            finally:
                # A gone connection is discarded anyway; the first error is the one to see.
                with contextlib.suppress(DBAPIError):
                    session.execute(text("RESET synchronous_commit"))

    def _claim_and_send(
        self,
        session: Session,
        size: int,
        transport: Transport,
        report: DispatchReport,
        overlap: bool = False,
    ) -> Steps[bool]:
        """``overlap``: record sent deliveries while the next envelope goes out (see
        outbox/recording.py); for a PostgreSQL session in autocommit only."""
        sending_edition = exists().where(
            Edition.id == Delivery.edition_id, Edition.status == EditionStatus.sending
        )
        ids = claim(
            session, Delivery, self.clock(), self.config.scheduler.lease, size,
            [sending_edition],
        )  # fmt: skip
        if not ids:
            return False
        rows: list[Any] = list(
            session.execute(
                select(
                    Delivery.id,
                    Delivery.edition_id,
                    Delivery.attempts,
                    Delivery.claims,
                    Subscriber.id.label("subscriber_id"),
                    Subscriber.email,
                    Subscriber.name,
                    Subscriber.status,
                    Subscriber.language,
                )
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(self._among(Delivery.id, ids))  # one parameter, not one per row
                .order_by(Delivery.id)
            )
        )
        grant = self.limiter.take(len(rows))
        if grant.granted < len(rows):
            # Over the limit: the rest waits, unspent, until a slot frees up.
            retry_at = grant.retry_at or self.clock() + timedelta(seconds=1)
            release(session, Delivery, [r.id for r in rows[grant.granted :]], retry_at)
            rows = rows[: grant.granted]
            if not rows:
                wait = (retry_at - self.clock()).total_seconds()
                if wait > self.config.scheduler.dispatch_every.total_seconds():
                    return False
                yield Wait(None, False, time.monotonic() + max(wait, 0.0))
                return True
        before = (report.sent, report.retried, report.failed, report.skipped)
        ended: list[datetime] = []  # when each message that used a slot got its reply
        try:
            with contextlib.closing(SentRecorder(session, overlap)) as recorder:
                # A copy: _send_rows drops rows it skips, the log below names the batch.
                rest = list(rows)
                more = yield from self._send_rows(session, recorder, transport, rest, report, ended)
        finally:
            self.limiter.release(grant.slots, ended)
        sent, retried, failed, skipped = (
            now - then
            for now, then in zip(
                (report.sent, report.retried, report.failed, report.skipped),
                before,
                strict=True,
            )
        )
        log.info(
            "delivery batch: %d claimed, sent=%d retried=%d failed=%d skipped=%d",
            len(rows), sent, retried, failed, skipped,
            extra={
                "edition_ids": sorted({r.edition_id for r in rows}),
                "first_delivery_id": rows[0].id,
                "last_delivery_id": rows[-1].id,
                "sent": sent, "retried": retried, "failed": failed, "skipped": skipped,
            },
        )  # fmt: skip
        return more

    def _send_rows(
        self,
        session: Session,
        recorder: SentRecorder,
        transport: Transport,
        rows: list[Any],
        report: DispatchReport,
        ended: list[datetime],
    ) -> Steps[bool]:
        """Send ``rows`` in order; append to ``ended`` when each message's transaction
        ended (for the rate limit). Unsubscribes, suppressions and halted editions are
        looked at before the first message and then at most ``HALT_CHECK_SECONDS`` apart."""
        look = True  # look at the editions' and subscribers' status before the next message
        renew_every = self.config.scheduler.lease.total_seconds() / 4
        renewed = looked = time.monotonic()
        # ``checked``: the rows whose subscriber was looked at, at ``looked``. A look covers
        # only the rows the connection may reach before the next one (twice as many as it
        # sent since the last), not the whole rest of the batch: each row is then looked
        # at about once instead of at every look, and still at most HALT_CHECK_SECONDS
        # before it is sent. (Ids, not positions: rows are dropped from the list as it goes.)
        n = at_look = 0
        checked: set[int] = set()
        while n < len(rows):
            if self.stopping.is_set():
                release(session, Delivery, [r.id for r in rows[n:]], self.clock())
                return False
            if look or rows[n].id not in checked or time.monotonic() - looked >= HALT_CHECK_SECONDS:
                # Any statement would wait for the last record first (recording.py), and
                # block every connection while it does: wait for it here, as a step.
                yield from recorder.settle_steps()
                rows[n:] = self._drop_halted(session, rows[n:])
                ahead = max(LOOK_AHEAD, 2 * (n - at_look))
                window = self._drop_departed(session, rows[n : n + ahead], transport, report)
                rows[n : n + ahead] = window
                checked, at_look = {r.id for r in window}, n
                look, looked = False, time.monotonic()
            if time.monotonic() - renewed > renew_every:
                yield from recorder.settle_steps()
                rows[n:] = self._renew_lease(session, rows[n:])
                renewed = time.monotonic()
            if n >= len(rows):
                break
            row = rows[n]
            n += 1
            if row.status != SubscriberStatus.active:
                self._set_delivery(
                    session, row.id, status=SendStatus.skipped,
                    last_error=f"subscriber is {row.status}",
                )  # fmt: skip
                self._count(transport, report, "skipped")
                continue
            try:
                prepared = self._prepared_edition(session, row.edition_id, row.language)
                message_id = make_message_id(
                    self.config, prepared.digest, prepared.period, row.email
                )
                recipient = Recipient(row.subscriber_id, row.email, row.name)
                data = prepared.message(recipient, message_id, self.clock())
            except SQLAlchemyError:
                raise  # the database's trouble, not the message's
            except Exception as e:
                # The message cannot be made (a template, the config): not the server's
                # refusal, and the rest of its variant would fail alike. They wait for the
                # fix; the batch goes on.
                rows[n - 1 :] = self._hold_unbuildable(session, rows[n - 1 :], e, transport, report)
                n -= 1
                continue
            started = time.perf_counter()
            try:
                sender = envelope_sender(self.config, message_id)
                envelope = Envelope(sender, row.email, data, message_id)
                try:
                    reply = yield from _send(transport, envelope, recorder)
                finally:
                    ended.append(self.clock())
            except PermanentSendError as e:
                self._fail_permanently(session, row, e)
                self._count(transport, report, "failed", started, error=f"delivery {row.id}: {e}")
                look = note_refusal(session, self.config.email.auto_pause, row.edition_id) or look
            except TransportDown as e:
                # The server is unwell: not this message's doing, so no attempt is spent. The
                # whole rest of the batch, this message included, waits for the next try.
                decision = self._decide("email", self.config.email, e, row.attempts)
                assert isinstance(decision, retry.Retry)  # an outage never gives up
                self._count(transport, report, "retry", started, error=f"delivery {row.id}: {e}")
                release(
                    session, Delivery, [r.id for r in rows[n - 1 :]], decision.at,
                    error=f"waiting for the server: {e}",
                )  # fmt: skip
                wait = decision.at - self.clock()
                log.warning("%s; deliveries wait %ss", e, f"{wait.total_seconds():g}")
                return False
            except DeliveryError as e:
                outcome = "retry" if self._retry_delivery(session, row, e) else "failed"
                self._count(transport, report, outcome, started, error=f"delivery {row.id}: {e}")
                look = note_refusal(session, self.config.email.auto_pause, row.edition_id) or look
            else:
                # In the database before the next message is accepted: a kill repeats at most
                # the one message that was on the wire on this connection.
                recorder.record(row.id, self.clock(), reply, message_id)
                self._count(transport, report, "sent", started)
                self._outage_over("email")
        return True

    def _renew_lease(self, session: Session, rows: list[Any]) -> list[Any]:
        """Extend the lease on ``rows`` (a slow server must not let a sibling take them
        while this connection still works through them), keeping only those still ours: a
        row another dispatcher claimed after our lease ran out has a higher claim count."""
        if not rows:
            return rows
        mine = tuple_(Delivery.id, Delivery.claims).in_([(r.id, r.claims) for r in rows])
        kept = set(
            session.scalars(
                update(Delivery)
                .where(mine, Delivery.status == SendStatus.sending)
                .values(lease_until=self.clock() + self.config.scheduler.lease)
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
        if len(kept) < len(rows):
            log.warning("%d claimed deliveries were taken over by another dispatcher",
                        len(rows) - len(kept))  # fmt: skip
        return [r for r in rows if r.id in kept]

    def _drop_halted(self, session: Session, rows: list[Any]) -> list[Any]:
        """``rows`` without those of editions paused or cancelled meanwhile: a paused
        edition's rows are handed back unspent, a cancelled one's are skipped."""
        editions = {r.edition_id for r in rows}
        halted = dict(
            session.execute(
                select(Edition.id, Edition.status).where(
                    Edition.id.in_(editions), Edition.status != EditionStatus.sending
                )
            )
            .tuples()
            .all()
        )
        if not halted:
            return rows
        paused = [r.id for r in rows if halted.get(r.edition_id) == EditionStatus.paused]
        release(session, Delivery, paused, self.clock())
        ended = [
            r.id
            for r in rows
            if r.edition_id in halted and halted[r.edition_id] != EditionStatus.paused
        ]
        if ended:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ended), Delivery.status == SendStatus.sending)
                .values(status=SendStatus.skipped, lease_until=None, last_error="edition cancelled")
                .execution_options(synchronize_session=False)
            )
            session.commit()
        return [r for r in rows if r.edition_id not in halted]

    def _count(
        self,
        transport: Transport,
        report: DispatchReport,
        outcome: str,
        started: float | None = None,
        error: str | None = None,
    ) -> None:
        if outcome == "sent":
            report.sent += 1
        elif outcome == "retry":
            report.retried += 1
        elif outcome == "failed":
            report.failed += 1
        else:
            report.skipped += 1
        if error:
            report.errors.append(error)
        name = getattr(transport, "name", "email")
        metrics.messages(name, outcome).inc()
        if started is not None:
            metrics.send_seconds(name).observe(time.perf_counter() - started)

    def _set_delivery(self, session: Session, delivery_id: int, **values: Any) -> None:
        values.setdefault("lease_until", None)
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()

    def _retry_delivery(self, session: Session, row: Any, error: DeliveryError) -> bool:
        """Write the one retry rule's decision (outbox/retry.py) to the delivery: queued
        again (True) or failed (False)."""
        decision = self._decide("email", self.config.email, error, row.attempts)
        now = self.clock()
        # A reply to this message is an outcome the automatic pause counts.
        refused = {"refused_at": now} if retry.caused_by_message(error) else {}
        if isinstance(decision, retry.GiveUp):
            self._set_delivery(
                session, row.id, status=SendStatus.failed, last_error=decision.reason,
                smtp_reply=error.reply, attempts=decision.attempts, **refused,
            )  # fmt: skip
            return False
        self._set_delivery(
            session, row.id, status=SendStatus.queued, last_error=str(error),
            next_attempt_at=decision.at, smtp_reply=error.reply, attempts=decision.attempts,
            **refused,
        )  # fmt: skip
        return True

    def _drop_departed(
        self, session: Session, rows: list[Any], transport: Transport, report: DispatchReport
    ) -> list[Any]:
        """``rows`` without those whose subscriber left or whose address was suppressed
        since the claim: those are skipped, so an unsubscribe holds up to the message."""
        if not rows:
            return rows
        gone: dict[int, str] = {
            sid: f"subscriber is {status}"
            for sid, status in session.execute(
                select(Subscriber.id, Subscriber.status).where(
                    self._among(Subscriber.id, {r.subscriber_id for r in rows}),
                    Subscriber.status != SubscriberStatus.active,
                )
            )
        }
        by_hash = {email_hash(r.email): r.subscriber_id for r in rows}
        for key in session.scalars(
            select(Suppression.email_hash).where(self._among(Suppression.email_hash, by_hash))
        ):
            gone.setdefault(by_hash[key], "address is suppressed")
        if not gone:
            return rows
        for r in rows:
            if r.subscriber_id in gone:
                self._set_delivery(
                    session, r.id, status=SendStatus.skipped, last_error=gone[r.subscriber_id]
                )
                self._count(transport, report, "skipped")
        return [r for r in rows if r.subscriber_id not in gone]

    def _among(self, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
        """``column IN values``. On PostgreSQL as ``= ANY(array)``: one parameter, so the
        statement's text is the same whatever the count and the driver parses it once,
        where an IN list of a few hundred placeholders costs more than the query."""
        if not self._postgres:
            return cast(ColumnElement[bool], column.in_(values))
        return cast(ColumnElement[bool], column == any_(literal(list(values), ARRAY(column.type))))

    def _prepared_edition(
        self, session: Session, edition_id: int, language: str = "en"
    ) -> PreparedEdition:
        key = (edition_id, language)
        with self._prepared_lock:  # one render per variant, whichever thread comes first
            if key not in self._prepared:
                edition = session.get_one(Edition, edition_id)
                view = edition_view(edition, edition_articles(session, edition_id))
                self._prepared[key] = self.prepare(view.digest, view, language)
                self._rendered_again(view.digest, key)
            return self._prepared[key]

    def _hold_unbuildable(
        self,
        session: Session,
        rows: list[Any],
        error: Exception,
        transport: Transport,
        report: DispatchReport,
    ) -> list[Any]:
        """``rows[0]``'s message could not be built: give it back, with every row of the
        same edition and language variant in ``rows``, due after a capped backoff and with
        no attempt spent, the reason in ``last_error`` and, for `status`, against its
        digest. Returns the rest of ``rows``, to send."""
        edition_id, language = rows[0].edition_id, rows[0].language
        alike = [r for r in rows if (r.edition_id, r.language) == (edition_id, language)]
        key = f"build:{edition_id}:{language}"
        wait = self._build_wait(key)
        reason = f"its message cannot be built: {error}"
        release(session, Delivery, [r.id for r in alike], self.clock() + wait, reason)
        for _ in alike:
            self._count(transport, report, "retry")
        report.errors.append(f"edition {edition_id} ({language}): {reason}")
        expected = isinstance(error, NewsBroadcastError)
        log.error(
            "edition %s (%s): %d deliveries wait %ss: %s",
            edition_id, language, len(alike), f"{wait.total_seconds():g}", reason,
            exc_info=None if expected else error,
            extra={"edition_id": edition_id, "language": language},
        )  # fmt: skip
        self._note_render_failure(edition_id, language, reason)
        return [r for r in rows if (r.edition_id, r.language) != (edition_id, language)]

    def _note_render_failure(self, edition_id: int, language: str, reason: str) -> None:
        """Record the failure against the edition's digest (`status` shows it), in a
        transaction of its own; the deliveries wait whether or not this can be written."""
        try:
            with self.sessions.begin() as session:
                digest = session.get_one(Edition, edition_id).digest
                error = f"edition {edition_id} ({language}): {reason}"
                record_failure(session, "digest", digest, error, self.clock())
            with self._prepared_lock:
                self._unrendered.add(digest)
        except SQLAlchemyError as e:
            # Two threads recording at once, or the database went away: the next try records.
            log.warning("could not record the failure of edition %s: %s", edition_id,
                        e.__class__.__name__)  # fmt: skip

    def _rendered_again(self, digest: str, key: tuple[int, str]) -> None:
        """An edition of ``digest`` rendered: forget the render failure recorded for it
        by this dispatcher (a planning failure is the planner's to clear). Called under
        ``_prepared_lock``."""
        self._outage_over(f"build:{key[0]}:{key[1]}")
        if digest not in self._unrendered:
            return
        self._unrendered.discard(digest)
        with contextlib.suppress(SQLAlchemyError), self.sessions.begin() as session:
            clear_failure(session, "digest", digest)

    def _fail_permanently(self, session: Session, row: Any, error: DeliveryError) -> None:
        """The receiver refused this message for good; what that says about the address
        comes from ``bounces.classify``, as for a DSN: a bad or disabled mailbox (5.1.x,
        5.2.1) is suppressed at once, a full one (5.2.2) counts as a soft bounce, a policy
        refusal (5.7.x: the sender is blocked) is not held against the address, and any
        other refusal counts toward ``email.bounce_after``."""
        kind = classify(reply_status(error.reply)) if error.reply else BounceKind.permanent
        now = self.clock()
        if kind in (BounceKind.bad_address, BounceKind.soft):
            hard = kind == BounceKind.bad_address
            sub = record_bounce(session, self.config, row.email, hard, error.reply or "", now)
            session.commit()
            if sub is not None and sub.status == SubscriberStatus.bounced:
                log.warning("subscriber %s marked bounced: %s", row.subscriber_id, error.reply)
        elif kind == BounceKind.permanent:
            self._count_bounce(session, row)
        decision = self._decide("email", self.config.email, error, row.attempts)
        self._set_delivery(
            session, row.id, status=SendStatus.failed, last_error=str(error),
            smtp_reply=error.reply, attempts=decision.attempts, refused_at=now,
        )  # fmt: skip

    def _count_bounce(self, session: Session, row: Any) -> None:
        # One statement counts the bounce and, at the threshold, marks the subscriber
        # bounced: atomic also where the batch runs in autocommit.
        counted = Subscriber.bounce_count + 1
        bounced = counted >= self.config.email.bounce_after
        bounces = session.scalar(
            update(Subscriber)
            .where(Subscriber.id == row.subscriber_id)
            .values(
                bounce_count=counted,
                status=case((bounced, SubscriberStatus.bounced.value), else_=Subscriber.status),
                updated_at=case((bounced, self.clock()), else_=Subscriber.updated_at),
            )
            .returning(Subscriber.bounce_count)
        )
        if bounces is not None and bounces >= self.config.email.bounce_after:
            log.warning(
                "subscriber %s marked bounced after %d permanent failures",
                row.subscriber_id,
                bounces,
            )


def _send(transport: Transport, envelope: Envelope, recorder: SentRecorder) -> Steps[str]:
    """``transport.send``, as steps where the transport has them; the previous message's
    record is settled before this one's content leaves."""
    send_steps = send_steps_of(transport)
    if send_steps is None:
        return transport.send(envelope, before_data=recorder.settle)
    return (yield from send_steps(envelope, recorder.settle_steps))
