"""The dispatcher owns delivery state: claim due rows, send, record the outcome, retry.

Every row moves queued → sending → sent | failed (or skipped). A claim is a lease: a
dispatcher that dies leaves its rows to be taken again once the lease runs out, and the
message then goes out with the same Message-ID so a receiver can drop the duplicate.
Outcomes are committed one message at a time, so a kill repeats at most the message that
was on the wire.

Only what a message caused counts against it: ``attempts`` grows when the receiver refuses
that message (a reply to it), never for a claim, a crash, a lost connection or a server that
is down. Those are waited out, tries spaced by a capped backoff, however long they last.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import (
    ARRAY,
    Engine,
    Integer,
    any_,
    case,
    cast,
    exists,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.channels.base import Channel, OutgoingPost, story_identity
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    Article,
    Delivery,
    Edition,
    EditionStatus,
    Post,
    SendStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsbroadcast.errors import DeliveryError, PermanentSendError, RateLimited, TransportDown
from newsbroadcast.outbox.pacing import take_slot
from newsbroadcast.outbox.ratelimit import SendRateLimiter
from newsbroadcast.outbox.recording import SentRecorder
from newsbroadcast.outbox.steering import edition_articles, pause_edition
from newsbroadcast.render.mime import PreparedEdition, make_message_id
from newsbroadcast.render.views import EditionView, Recipient, edition_view
from newsbroadcast.runtime import metrics
from newsbroadcast.subscribers.bounces import BounceKind, classify, reply_status
from newsbroadcast.subscribers.lifecycle import record_bounce
from newsbroadcast.subscribers.suppressions import email_hash
from newsbroadcast.transports.base import Envelope, Transport

log = logging.getLogger("newsbroadcast.dispatch")

MAX_BACKOFF = timedelta(hours=6)
# Seconds between two looks at whether an edition was paused or cancelled meanwhile (a
# query; per message it would cost more than the message itself).
HALT_CHECK_SECONDS = 0.5


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.skipped += other.skipped
        self.errors += other.errors

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.failed + self.skipped


def backoff(base: timedelta, attempts: int) -> timedelta:
    """base, 2·base, 4·base, … capped at six hours (for any count: an outage's tries
    keep counting for as long as it lasts)."""
    delay = base
    for _ in range(max(attempts - 1, 0)):
        if delay >= MAX_BACKOFF:
            break
        delay *= 2
    return min(delay, MAX_BACKOFF)


def claim(
    session: Session,
    model: type[Delivery] | type[Post],
    now: datetime,
    lease: timedelta,
    limit: int,
    extra: Sequence[Any] = (),
) -> list[int]:
    """Take up to ``limit`` due rows: `sending` ones whose lease ran out (a dead
    dispatcher's), then queued ones, oldest due first. A claim counts in ``claims``, not
    in ``attempts``: a crash must not use up a message's attempts.

    Each step is one UPDATE … WHERE id picked by a SELECT … FOR UPDATE SKIP LOCKED …
    RETURNING: on PostgreSQL concurrent dispatchers get disjoint rows without waiting on
    each other; on SQLite the statement holds the write lock, which serialises claims just
    as well. Both steps commit together.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    steps = (
        ((model.status == SendStatus.sending, model.lease_until < now), (model.id,)),
        (
            (model.status == SendStatus.queued, model.next_attempt_at <= now),
            # The due index's own order: the database reads only the rows it takes.
            (model.next_attempt_at, model.id),
        ),
    )
    ids: list[int] = []
    for due, order in steps:
        if len(ids) >= limit:
            break
        pick = select(model.id).where(*due, *extra).order_by(*order).limit(limit - len(ids))
        if postgres:
            # ANY(array) rather than IN (subquery): PostgreSQL then reaches the picked rows
            # through the primary key instead of scanning the whole table to join them.
            pick = pick.with_for_update(skip_locked=True)
            picked = select(func.array_agg(pick.subquery().c.id)).scalar_subquery()
            chosen = model.id == any_(cast(picked, ARRAY(Integer)))
        else:
            chosen = model.id.in_(pick.scalar_subquery())
        ids += session.scalars(
            update(model)
            .where(chosen)
            .values(status=SendStatus.sending, lease_until=now + lease,
                    claims=model.claims + 1)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
    session.commit()
    return sorted(ids)


class Dispatcher:
    """Sends what the planner queued. Safe to run in many processes on one PostgreSQL."""

    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        transport: Callable[[], Transport],
        channels: dict[str, Channel],
        prepare: Callable[[str, EditionView, str], PreparedEdition],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.make_transport = transport
        self.channels = channels
        self.prepare = prepare
        self.clock = clock
        # (edition id, language) → rendered once per language variant
        self._prepared: dict[tuple[int, str], PreparedEdition] = {}
        self._prepared_lock = threading.Lock()
        # Consecutive outages per transport or channel: how long to wait before the next try.
        self._outages: dict[str, int] = {}
        transport_name = config.email.transport
        self.limiter = SendRateLimiter(
            sessions, transport_name, config.email.rate_limit, clock, hold=config.scheduler.lease
        )
        self._postgres = sessions.kw["bind"].dialect.name == "postgresql"
        #: Set it (from a signal handler, another thread) to stop after the messages in flight.
        self.stopping = threading.Event()

    # -- the loop -----------------------------------------------------------------------------

    def drain(self, budget: timedelta | None = None) -> DispatchReport:
        """Send everything due now; return when nothing due is left.

        With ``budget``, return once that long has passed even if more is due: no batch is
        claimed after it, the batches in flight finish (nothing is left half-done) and the
        rest stays queued for the next drain. Each connection sends at least one batch per
        drain, so even a tiny budget makes progress. The scheduler's one thread needs this:
        a drain as long as a big edition would hold back every poll, plan and reload."""
        seconds = None if budget is None else budget.total_seconds()
        deadline = None if seconds is None else time.monotonic() + seconds
        total = DispatchReport()
        while True:
            report = self.dispatch_once(deadline)
            total.add(report)
            if report.handled == 0 or self.stopping.is_set():
                return total
            if deadline is not None and time.monotonic() >= deadline:
                log.info(
                    "dispatch: its budget of %gs is spent after %d messages; the next run goes on",
                    seconds, total.handled, extra={"handled": total.handled},
                )  # fmt: skip
                return total

    def dispatch_once(self, deadline: float | None = None) -> DispatchReport:
        """One round: deliveries (until none is due, or past ``deadline``, a
        ``time.monotonic()`` value), then one claim of posts, then editions that ended."""
        report = DispatchReport()
        report.add(self.send_deliveries(deadline))
        report.add(self.publish_posts())
        self.finish_editions()
        return report

    # -- email --------------------------------------------------------------------------------

    def send_deliveries(self, deadline: float | None = None) -> DispatchReport:
        """Send due deliveries until none is due (or ``stopping`` is set, or a batch ends
        past ``deadline``, a ``time.monotonic()`` value).

        ``email.smtp.connections`` connections work at once, each in a thread of its own
        with its own transport and database session, messages back to back on each.
        """
        pool = self.connections
        reports = [DispatchReport() for _ in range(pool)]
        if pool == 1:
            self._connection_loop(reports[0], deadline)
        else:
            errors: list[BaseException] = []

            def work(report: DispatchReport) -> None:
                try:
                    self._connection_loop(report, deadline)
                except BaseException as e:  # re-raised below, in the caller's thread
                    errors.append(e)

            threads = [
                threading.Thread(target=work, args=(r,), name=f"delivery-{i}", daemon=True)
                for i, r in enumerate(reports)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
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

    @property
    def connections(self) -> int:
        email = self.config.email
        return email.smtp.connections if email.transport == "smtp" and email.smtp else 1

    def _connection_loop(self, report: DispatchReport, deadline: float | None = None) -> None:
        """One connection's work: claim a batch, send it, record each outcome; again, until
        nothing is due or, after a whole batch, ``deadline`` has passed."""
        with self.make_transport() as transport:
            while not self.stopping.is_set() and self._send_batch(transport, report):
                if deadline is not None and time.monotonic() >= deadline:
                    return

    def _send_batch(self, transport: Transport, report: DispatchReport) -> bool:
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
                return self._claim_and_send(session, size, transport, report)
        with (
            bind.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
            Session(connection, expire_on_commit=False) as session,
        ):
            if not self._postgres:
                return self._claim_and_send(session, size, transport, report)
            # Nor does a recorded send wait for its WAL flush, which would cost more than
            # the SMTP transaction: a killed worker loses nothing this way (the commit is in
            # the server's memory); only a crash of PostgreSQL itself may forget the last
            # few hundred milliseconds of records, and those messages are then sent again
            # with the same Message-ID. SQLite makes the same trade with synchronous=NORMAL
            # (see db/engine.py).
            session.execute(text("SET synchronous_commit TO off"))
            try:
                return self._claim_and_send(session, size, transport, report, overlap=True)
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
    ) -> bool:
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
                .where(Delivery.id.in_(ids))
                .order_by(Delivery.id)
            )
        )
        grant = self.limiter.take(len(rows))
        if grant.granted < len(rows):
            # Over the limit: the rest waits, unspent, until a slot frees up.
            retry_at = grant.retry_at or self.clock() + timedelta(seconds=1)
            self._release_deliveries(session, [r.id for r in rows[grant.granted :]], retry_at)
            rows = rows[: grant.granted]
            if not rows:
                wait = (retry_at - self.clock()).total_seconds()
                if wait > self.config.scheduler.dispatch_every.total_seconds():
                    return False
                self.stopping.wait(max(wait, 0.0))
                return True
        before = (report.sent, report.retried, report.failed, report.skipped)
        ended: list[datetime] = []  # when each message that used a slot got its reply
        try:
            with contextlib.closing(SentRecorder(session, overlap)) as recorder:
                # A copy: _send_rows drops rows it skips, the log below names the batch.
                more = self._send_rows(session, recorder, transport, list(rows), report, ended)
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
    ) -> bool:
        """Send ``rows`` in order; append to ``ended`` when each message's transaction
        ended (for the rate limit). Unsubscribes, suppressions and halted editions are
        looked at before the first message and then at most ``HALT_CHECK_SECONDS`` apart."""
        sender = parseaddr(self.config.site.sender)[1]
        look = True  # look at the editions' and subscribers' status before the next message
        renew_every = self.config.scheduler.lease.total_seconds() / 4
        renewed = looked = time.monotonic()
        n = 0
        while n < len(rows):
            if self.stopping.is_set():
                self._release_deliveries(session, [r.id for r in rows[n:]], self.clock())
                return False
            if look or time.monotonic() - looked >= HALT_CHECK_SECONDS:
                rows[n:] = self._drop_halted(session, rows[n:])
                rows[n:] = self._drop_departed(session, rows[n:], transport, report)
                look, looked = False, time.monotonic()
            if time.monotonic() - renewed > renew_every:
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
            prepared = self._prepared_edition(session, row.edition_id, row.language)
            message_id = make_message_id(self.config, prepared.digest, prepared.period, row.email)
            recipient = Recipient(row.subscriber_id, row.email, row.name)
            started = time.perf_counter()
            try:
                data = prepared.message(recipient, message_id, self.clock())
                envelope = Envelope(sender, row.email, data, message_id)
                try:
                    reply = transport.send(envelope, before_data=recorder.settle)
                finally:
                    ended.append(self.clock())
            except PermanentSendError as e:
                self._fail_permanently(session, row, e)
                self._count(transport, report, "failed", started, error=f"delivery {row.id}: {e}")
                look = self._note_refusal(session, row.edition_id) or look
            except TransportDown as e:
                # The server is unwell: not this message's doing, so no attempt is spent. The
                # whole rest of the batch, this message included, waits for the next try.
                wait = self._outage_wait("email", self.config.email)
                self._count(transport, report, "retry", started, error=f"delivery {row.id}: {e}")
                self._release_deliveries(
                    session, [r.id for r in rows[n - 1 :]], self.clock() + wait,
                    error=f"waiting for the server: {e}",
                )  # fmt: skip
                log.warning("%s; deliveries wait %ss", e, f"{wait.total_seconds():g}")
                return False
            except DeliveryError as e:
                outcome = "retry" if self._retry_delivery(session, row, e) else "failed"
                self._count(transport, report, outcome, started, error=f"delivery {row.id}: {e}")
                look = self._note_refusal(session, row.edition_id) or look
            else:
                # In the database before the next message is accepted: a kill repeats at most
                # the one message that was on the wire on this connection.
                recorder.record(row.id, self.clock(), reply, message_id)
                self._count(transport, report, "sent", started)
                self._outages.pop("email", None)
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
        self._release_deliveries(session, paused, self.clock())
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
        metrics.MESSAGES.labels(name, outcome).inc()
        if started is not None:
            metrics.SEND_SECONDS.labels(name).observe(time.perf_counter() - started)

    def _note_refusal(self, session: Session, edition_id: int) -> bool:
        """Feed the automatic pause after a refusal: when, of the edition's last ``window``
        outcomes in the database (every dispatcher's), at least ``failure_share`` were
        refusals, pause it, so a block does not burn through the whole list. True when the
        edition no longer sends (paused now, or halted by someone else meanwhile)."""
        settings = self.config.email.auto_pause
        status, since = session.execute(
            select(Edition.status, Edition.autopause_from).where(Edition.id == edition_id)
        ).one()
        if status != EditionStatus.sending:
            return True
        if settings is None:
            return False
        outcomes = sorted(
            [(at, False) for at in self._latest(session, Delivery.sent_at, edition_id, since)]
            + [(at, True) for at in self._latest(session, Delivery.refused_at, edition_id, since)],
            reverse=True,
        )[: settings.window]
        if len(outcomes) < settings.window:
            return False
        if sum(refused for _, refused in outcomes) / len(outcomes) < settings.failure_share:
            return False
        # One statement: a sibling that looks now sees the edition paused, never a fresh
        # window on a still-sending edition (which would let it send on). Resuming starts
        # the fresh window (resume_edition).
        pause_edition(
            session,
            edition_id,
            f"at least {settings.failure_share:.0%} of the last {settings.window} "
            "messages were refused; see `newsbroadcast status`, then "
            f"`newsbroadcast edition resume {edition_id}`",
        )
        return True

    def _latest(
        self, session: Session, column: Any, edition_id: int, since: datetime | None
    ) -> list[datetime]:
        """The edition's latest ``window`` times in ``column`` (after ``since``)."""
        assert self.config.email.auto_pause is not None
        query = select(column).where(Delivery.edition_id == edition_id, column.is_not(None))
        if since is not None:
            query = query.where(column > since)
        window = self.config.email.auto_pause.window
        return list(session.scalars(query.order_by(column.desc()).limit(window)))

    def _outage_wait(self, key: str, settings: Any) -> timedelta:
        """How long ``key`` (the email transport or a channel) waits after one more
        outage in a row: ``retry_after``, doubling, at most ``outage_wait_max``."""
        n = self._outages[key] = self._outages.get(key, 0) + 1
        return min(backoff(settings.retry_after, n), settings.outage_wait_max)

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
        """The receiver refused this message for now: spend one of its attempts and queue it
        again after a backoff; False (and failed) once attempts run out."""
        attempts = row.attempts + 1
        now = self.clock()
        if attempts >= self.config.email.max_attempts:
            self._set_delivery(
                session, row.id, status=SendStatus.failed, last_error=f"gave up: {error}",
                smtp_reply=error.reply, attempts=attempts, refused_at=now,
            )  # fmt: skip
            return False
        delay = (
            timedelta(seconds=error.retry_after)
            if isinstance(error, RateLimited)
            else backoff(self.config.email.retry_after, attempts)
        )
        self._set_delivery(
            session, row.id, status=SendStatus.queued, last_error=str(error),
            next_attempt_at=now + delay, smtp_reply=error.reply, attempts=attempts,
            refused_at=now,
        )  # fmt: skip
        return True

    def _release_deliveries(
        self, session: Session, ids: list[int], when: datetime, error: str | None = None
    ) -> None:
        """Give claimed deliveries back, due at ``when``, without spending an attempt
        (``error``: why they wait, for `status`)."""
        if not ids:
            return
        values: dict[str, Any] = {"status": SendStatus.queued, "lease_until": None,
                                  "next_attempt_at": when}  # fmt: skip
        if error is not None:
            values["last_error"] = error
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == SendStatus.sending)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()

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
                    Subscriber.id.in_({r.subscriber_id for r in rows}),
                    Subscriber.status != SubscriberStatus.active,
                )
            )
        }
        by_hash = {email_hash(r.email): r.subscriber_id for r in rows}
        for key in session.scalars(
            select(Suppression.email_hash).where(Suppression.email_hash.in_(by_hash))
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

    def _prepared_edition(
        self, session: Session, edition_id: int, language: str = "en"
    ) -> PreparedEdition:
        key = (edition_id, language)
        with self._prepared_lock:  # one render per variant, whichever thread comes first
            if key not in self._prepared:
                edition = session.get_one(Edition, edition_id)
                view = edition_view(edition, edition_articles(session, edition_id))
                self._prepared[key] = self.prepare(view.digest, view, language)
            return self._prepared[key]

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
        self._set_delivery(
            session, row.id, status=SendStatus.failed, last_error=str(error),
            smtp_reply=error.reply, attempts=row.attempts + 1, refused_at=now,
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

    # -- social -------------------------------------------------------------------------------

    def publish_posts(self) -> DispatchReport:
        report = DispatchReport()
        if not self.channels:
            return report
        with self.sessions() as session:
            now, lease = self.clock(), self.config.scheduler.lease
            paced = {c.name: c.pace for c in self.config.social if c.pace}
            free = Post.channel.in_([n for n in self.channels if n not in paced])
            ids = claim(session, Post, now, lease, 20, [free])
            for name, pace in paced.items():
                # One post per slot of the channel's pace; slot and claim commit together.
                if take_slot(session, name, pace, now):
                    ids += claim(session, Post, now, lease, 1, [Post.channel == name])
            if not ids:
                return report
            rows = session.execute(
                select(Post, Article)
                .join(Article, Article.id == Post.article_id)
                .where(Post.id.in_(ids))
                .order_by(Post.id)
            ).all()
            for post, article in rows:
                channel = self.channels[post.channel]
                outgoing = OutgoingPost(
                    post.id,
                    article.id,
                    post.channel,
                    post.text,
                    article.url,
                    article.title,
                    summary=article.summary,
                    image=article.image,
                    first_attempt_at=post.first_attempt_at,
                    story=story_identity(self.config.site.list_id, article.source, article.guid),
                )
                if post.first_attempt_at is None:
                    # Committed before the request leaves: after a crash, the next attempt
                    # knows this one may have been accepted and settles it first.
                    post.first_attempt_at = self.clock()
                    session.commit()
                try:
                    published = channel.publish(outgoing)
                except PermanentSendError as e:
                    post.attempts += 1
                    self._finish(session, post, SendStatus.failed, error=str(e))
                    report.failed += 1
                    report.errors.append(f"post {post.id} on {post.channel}: {e}")
                except DeliveryError as e:
                    report.errors.append(f"post {post.id} on {post.channel}: {e}")
                    if e.unsent:
                        # Certainly not published: the next attempt is a first attempt again,
                        # also for a process that did not see this one (state in the row).
                        post.first_attempt_at = None
                    if self._retry_later(session, post, e):
                        report.retried += 1
                    else:
                        report.failed += 1
                else:
                    post.remote_id = published.remote_id
                    post.remote_url = published.remote_url
                    self._finish(session, post, SendStatus.sent)
                    self._outages.pop(post.channel, None)
                    report.sent += 1
                    log.info(
                        "post %s sent on %s",
                        post.id,
                        post.channel,
                        extra={
                            "post_id": post.id,
                            "article_id": article.id,
                            "channel": post.channel,
                            "remote_id": published.remote_id,
                        },
                    )
        if report.handled:
            log.info(
                "posts: sent=%d retried=%d failed=%d", report.sent, report.retried, report.failed
            )
        return report

    # -- posts: state changes -------------------------------------------------------------------

    def _finish(
        self, session: Session, row: Post, status: SendStatus, error: str | None = None
    ) -> None:
        row.status = status
        row.lease_until = None
        row.last_error = error
        if status == SendStatus.sent:
            row.sent_at = self.clock()
        session.commit()

    def _retry_later(self, session: Session, row: Post, error: DeliveryError) -> bool:
        """Queue ``row`` again after a backoff, by its channel's retry settings; False (and
        failed) once the attempts it caused run out. Only an answer to the post spends an
        attempt: no answer at all (the network, the server down) or a request to wait is
        waited out, at most ``outage_wait_max`` between tries."""
        settings: Any = next(
            (c for c in self.config.social if c.name == row.channel), self.config.email
        )
        caused = error.reply is not None and not isinstance(error, (RateLimited, TransportDown))
        if not caused:
            delay = (
                timedelta(seconds=error.retry_after)
                if isinstance(error, RateLimited)
                else self._outage_wait(row.channel, settings)
            )
        else:
            row.attempts += 1
            if row.attempts >= settings.max_attempts:
                self._finish(session, row, SendStatus.failed, error=f"gave up: {error}")
                return False
            delay = backoff(settings.retry_after, row.attempts)
        row.status = SendStatus.queued
        row.lease_until = None
        row.last_error = str(error)
        row.next_attempt_at = self.clock() + delay
        session.commit()
        return True

    def finish_editions(self) -> None:
        """Mark editions whose every delivery has ended as done."""
        open_rows = exists().where(
            Delivery.edition_id == Edition.id,
            Delivery.status.in_([SendStatus.queued, SendStatus.sending]),
        )
        with self.sessions() as session:
            session.execute(
                update(Edition)
                .where(Edition.status == EditionStatus.sending, ~open_rows)
                .values(status=EditionStatus.done, finished_at=self.clock())
                .execution_options(synchronize_session=False)
            )
            session.commit()
