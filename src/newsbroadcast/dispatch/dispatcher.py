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

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import jinja2
from sqlalchemy import exists, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.channels.base import Channel
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Delivery, Edition, EditionStatus, utcnow
from newsbroadcast.dispatch.email import EmailSending
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.dispatch.social import PostPublishing
from newsbroadcast.dispatch.transactional import TransactionalSending
from newsbroadcast.errors import DeliveryError, NewsBroadcastError
from newsbroadcast.outbox import retry
from newsbroadcast.outbox.claim import DUE, backoff
from newsbroadcast.outbox.ratelimit import SendRateLimiter
from newsbroadcast.render.mime import PreparedEdition
from newsbroadcast.render.views import EditionView
from newsbroadcast.transports.base import Transport

log = logging.getLogger("newsbroadcast.dispatch")


class Dispatcher(TransactionalSending, EmailSending, PostPublishing):
    """Sends what the planner queued. Safe to run in many processes on one PostgreSQL."""

    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        transport: Callable[[], Transport],
        channels: dict[str, Channel],
        prepare: Callable[[str, EditionView, str], PreparedEdition],
        templates: Callable[[], jinja2.Environment],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``templates``: the templates transactional emails are rendered with, read when
        they are sent (the service's, which a reload replaces)."""
        self.config = config
        self.sessions = sessions
        self.make_transport = transport
        self.channels = channels
        self.prepare = prepare
        self.clock = clock
        self.templates = templates
        # (edition id, language) → rendered once per language variant
        self._prepared: dict[tuple[int, str], PreparedEdition] = {}
        self._prepared_lock = threading.Lock()
        self._unrendered: set[str] = set()
        # Consecutive outages per transport or channel: how long to wait before the next try.
        self._outages: dict[str, int] = {}
        # Delivery threads count outages on the same key at once.
        self._outages_lock = threading.Lock()
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
        a drain as long as a big edition would hold back every poll, plan and reload.
        Transactional emails and posts are claimed once in the first round whatever the
        time (a big edition must not hold them back until it ends), later only before it."""
        seconds = None if budget is None else budget.total_seconds()
        deadline = None if seconds is None else time.monotonic() + seconds
        total = DispatchReport()
        first = True
        while True:
            report = self.dispatch_once(deadline, claim_late=first)
            first = False
            total.add(report)
            if report.handled == 0 or self.stopping.is_set():
                return total
            if deadline is not None and time.monotonic() >= deadline:
                log.info(
                    "dispatch: its budget of %gs is spent after %d messages; the next run goes on",
                    seconds, total.handled, extra={"handled": total.handled},
                )  # fmt: skip
                return total

    def dispatch_once(
        self, deadline: float | None = None, claim_late: bool = True
    ) -> DispatchReport:
        """One round: due transactional emails (a person waits for them), deliveries
        (until none is due, or past ``deadline``, a ``time.monotonic()`` value), then one
        claim of posts, then editions that ended. ``claim_late``: claim transactional
        emails and posts even past ``deadline`` (else not: what is claimed is finished)."""
        others = None if claim_late else deadline
        report = DispatchReport()
        # Each step on its own: a failing one is logged and the others still run this pass.
        report.add(self._step("transactional emails", lambda: self.send_transactional(others)))
        report.add(self._step("deliveries", lambda: self.send_deliveries(deadline)))
        report.add(self._step("posts", lambda: self.publish_posts(others)))
        report.add(self._step("finishing editions", self._finish_editions_step))
        return report

    def _step(self, name: str, step: Callable[[], DispatchReport]) -> DispatchReport:
        """``step()``, or an empty report naming the error when it fails (one log line;
        a traceback only for what is not ours). The database's errors are not one step's
        failure: they go up to the caller, which tells an outage (waited out, said once:
        db.watch) from a bug."""
        try:
            return step()
        except SQLAlchemyError:
            raise
        except Exception as e:
            expected = isinstance(e, NewsBroadcastError)
            log.error("dispatch step %s failed: %s", name, e, exc_info=None if expected else e)
            return DispatchReport(errors=[f"dispatch step {name}: {e}"])

    def _finish_editions_step(self) -> DispatchReport:
        self.finish_editions()
        return DispatchReport()

    def forget_prepared(self) -> None:
        """Drop the editions rendered so far: each renders again, with the templates and
        config of the moment, when its next delivery is sent (after a reload)."""
        with self._prepared_lock:
            self._prepared.clear()

    # -- shared by both sides -------------------------------------------------------------------

    def _decide(
        self, key: str, settings: retry.RetrySettings, error: DeliveryError, attempts: int
    ) -> retry.Retry | retry.GiveUp:
        """The one retry rule (outbox/retry.py) for a message on ``key`` (the email
        transport or a channel), counting one more outage in a row on ``key`` when the
        message did not cause the failure."""
        with self._outages_lock:
            outages = self._outages.get(key, 0)
            decision = retry.decide(error, attempts, settings, self.clock(), outages)
            if isinstance(decision, retry.Retry) and decision.outage:
                self._outages[key] = outages + 1
        return decision

    def _outage_over(self, key: str) -> None:
        """A message went through on ``key``: the next outage waits from the start."""
        with self._outages_lock:
            self._outages.pop(key, None)

    def _build_wait(self, key: str) -> timedelta:
        """How long rows whose message cannot be built (a template to fix) wait before
        the next try: ``email.retry_after``, doubling per failure in a row on ``key``, at
        most ``email.outage_wait_max``. No attempt is spent: the message did nothing."""
        with self._outages_lock:
            failures = self._outages.get(key, 0) + 1
            self._outages[key] = failures
        email = self.config.email
        return min(backoff(email.retry_after, failures), email.outage_wait_max)

    def finish_editions(self) -> None:
        """Mark editions whose every delivery has ended as done."""
        open_rows = exists().where(
            Delivery.edition_id == Edition.id,
            # Literals: the partial due index's own predicate, usable by a generic plan too.
            Delivery.status.in_(DUE),
        )
        with self.sessions() as session:
            session.execute(
                update(Edition)
                .where(Edition.status == EditionStatus.sending, ~open_rows)
                .values(status=EditionStatus.done, finished_at=self.clock())
                .execution_options(synchronize_session=False)
            )
            session.commit()
