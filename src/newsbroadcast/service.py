"""The composition root: builds the whole service from a Config, once, for the CLI and tests.

Each step here is idempotent (unique keys in the database make a repeat harmless), so the
scheduler may fire them as often as it likes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
import jinja2
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from newsbroadcast import db
from newsbroadcast.articles.ingest import PollReport, poll_all
from newsbroadcast.channels import make_channel
from newsbroadcast.channels.base import Channel
from newsbroadcast.config.model import Config, Digest
from newsbroadcast.db.models import utcnow
from newsbroadcast.dispatch.dispatcher import Dispatcher
from newsbroadcast.dispatch.dryrun import DryChannel, DryRunDatabase, DryTransport, Tally
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.errors import (
    InputError,
    NewsBroadcastError,
    RenderError,
)
from newsbroadcast.planning.editions import PlannedEdition, bulk_plan_edition, subject_renderer
from newsbroadcast.planning.posts import plan_posts, register_channels
from newsbroadcast.planning.schedule import due_period
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.mime import PreparedEdition
from newsbroadcast.render.templates import make_environment
from newsbroadcast.render.views import EditionView
from newsbroadcast.runtime.failures import clear_failure, record_failure
from newsbroadcast.transports import Transport, make_transport

log = logging.getLogger("newsbroadcast")

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """One thing a pass could not do. ``kind``: source, post, channel, digest, or step (a
    whole step: poll, plan digests, dispatch); ``name`` says which one."""

    kind: str
    name: str
    error: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.error}"


@dataclass
class PassReport:
    polls: list[PollReport] = field(default_factory=list)
    editions: list[PlannedEdition] = field(default_factory=list)
    posts_planned: int = 0
    dispatch: DispatchReport = field(default_factory=DispatchReport)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class Service:
    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = utcnow,
        http: httpx.Client | None = None,
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.http = http
        self.engine = engine or db.make_engine(config.database_url, config.senders)
        db.upgrade(self.engine)
        self.sessions = db.sessions(self.engine)
        # Dry run (dispatch/dryrun.py): one transaction rolled back at close, nothing handed over.
        self.dry_run: DryRunDatabase | None = None
        self.tally = Tally()
        if dry_run:
            self.dry_run = DryRunDatabase(self.engine.url)
            self.sessions = self.dry_run.sessions
        # A snapshot of the templates: a file saved broken on disk changes nothing until
        # a reload has checked it (see config/reload.py).
        self.templates = make_environment(config.path(config.templates), snapshot=True)
        self.channels: dict[str, Channel] = self._make_channels(config)
        self.dispatcher = Dispatcher(
            # One connection at a time when dry: the rolled-back transaction is one connection.
            _single_connection(config) if dry_run else config,
            self.sessions,
            transport=self._make_transport,
            channels=self.channels,
            prepare=self._prepare,
            clock=clock,
            templates=lambda: self.templates,
        )
        with self.sessions() as session:
            register_channels(session, [ch.name for ch in config.social], clock())

    def _make_transport(self) -> Transport:
        return DryTransport(self.tally) if self.dry_run else make_transport(self.config)

    def _make_channels(self, config: Config) -> dict[str, Channel]:
        channels = {ch.name: make_channel(ch, config) for ch in config.social}
        if self.dry_run:
            return {name: DryChannel(ch, self.tally) for name, ch in channels.items()}
        return channels

    def reconfigure(self, config: Config, templates: jinja2.Environment) -> None:
        """Use a new, already checked configuration and templates from the next step on.
        Rendered editions are dropped so they render again with the new templates. The
        database and the rate limits stay as they were started (a restart changes them)."""
        self.config = config
        self.templates = templates
        self.channels.clear()
        self.channels.update(self._make_channels(config))
        self.dispatcher.config = _single_connection(config) if self.dry_run else config
        self.dispatcher.forget_prepared()
        with self.sessions() as session:
            register_channels(session, [ch.name for ch in config.social], self.clock())

    def _prepare(self, digest: str, view: EditionView, language: str = "en") -> PreparedEdition:
        return prepare_edition(
            self.templates, self.config, self.config.digest(digest), view, language
        )

    # -- steps ----------------------------------------------------------------------------

    def poll(
        self, names: list[str] | None = None, failures: list[Failure] | None = None
    ) -> list[PollReport]:
        """Read the named sources (all by default), then queue the posts their new
        articles call for. Each failed source is added to ``failures``."""
        return self._poll(names, [] if failures is None else failures)[0]

    def _poll(
        self, names: list[str] | None, failures: list[Failure]
    ) -> tuple[list[PollReport], int]:
        try:
            reports = poll_all(self.sessions, self.config, self.clock(), self.http, names)
        except InputError:
            raise  # a name the caller got wrong: theirs to fix, nothing was polled
        except Exception as e:
            # poll_all keeps each source's failure to that source; should it fail as a
            # whole, the articles already stored still get their posts below.
            _step_failed(failures, "poll", e)
            reports = []
        failures.extend(Failure("source", r.source, r.error) for r in reports if r.error)
        return reports, self.plan_posts(failures)

    def plan_digest(
        self, digest: Digest, force: bool = False, failures: list[Failure] | None = None
    ) -> PlannedEdition | None:
        """Plan ``digest``'s edition if one is due. When its templates fail for this
        edition, nothing is planned: the failure is recorded for `status`, logged in one
        line and added to ``failures``, and None is returned."""
        now = self.clock()
        period = due_period(digest, now, force)
        if period is None:
            return None

        subject_for = subject_renderer(self.templates, self.config, digest, period, now)
        try:
            with self.sessions() as session:
                planned = bulk_plan_edition(session, digest, period, now, subject_for)
        except RenderError as e:
            log.warning("digest %s: no edition for %s: %s", digest.name, period, e)
            failures = [] if failures is None else failures
            failures.append(Failure("digest", digest.name, f"{period}: {e}"))
            self._note_failures("digest", {digest.name: f"{period}: {e}"}, [], now)
            return None
        self._note_failures("digest", {}, [digest.name], now)
        return planned

    def plan_digests(
        self, force: bool = False, failures: list[Failure] | None = None
    ) -> list[PlannedEdition]:
        planned = (self.plan_digest(d, force, failures) for d in self.config.digests)
        return [p for p in planned if p is not None]

    def plan_posts(self, failures: list[Failure] | None = None) -> int:
        """Queue one post per channel for each article it should announce. A story whose
        post cannot fit the channel gets a ``failed`` post with the reason; a channel whose
        template fails is recorded for `status` and its stories wait for the fix; the other
        posts are planned. Each such failure is logged in one line and added to
        ``failures``."""
        failures = [] if failures is None else failures
        now = self.clock()
        with self.sessions() as session:
            planned = plan_posts(session, self.config.social, self.templates, self.channels, now)
        for post in planned.failed_posts:
            log.warning(
                "post of article %d on %s failed: %s", post.article_id, post.channel, post.error
            )
            failures.append(
                Failure("post", f"{post.channel}/article {post.article_id}", post.error)
            )
        if planned.count:
            log.info("posts planned: %d", planned.count)
        broken = planned.broken
        for name, error in broken.items():
            log.warning("channel %s: posts not planned: %s", name, error)
            failures.append(Failure("channel", name, error))
        healthy = [ch.name for ch in self.config.social if ch.name not in broken]
        self._note_failures("channel", broken, healthy, now)
        return planned.count

    def _note_failures(
        self, kind: str, failed: dict[str, str], healthy: list[str], now: datetime
    ) -> None:
        """Record for `status` which ``kind``s failed and which planned fine again, in a
        transaction of its own: what was planned stays planned if this cannot be written."""
        try:
            with self.sessions.begin() as session:
                for name, error in failed.items():
                    record_failure(session, kind, name, error, now)
                for name in healthy:
                    clear_failure(session, kind, name)
        except SQLAlchemyError as e:
            # Two planners recording the same failure at once, or the database went away:
            # the next pass records it again.
            log.warning("could not record %s failures: %s", kind, e.__class__.__name__)

    def dispatch(self, budget: timedelta | None = None) -> DispatchReport:
        """Send what is due: all of it, or (``budget``) until that long has passed."""
        return self.dispatcher.drain(budget)

    def run_once(self, force: bool = False) -> PassReport:
        """One whole pass: poll, plan what is due, send everything due. Each step runs
        whatever the one before did; ``failures`` lists every source, post, channel, digest
        and step that failed (empty: all went well)."""
        report = PassReport()
        failures = report.failures
        report.polls, report.posts_planned = _guarded(
            "poll", lambda: self._poll(None, failures), (list[PollReport](), 0), failures
        )
        report.editions = _guarded(
            "plan digests", lambda: self.plan_digests(force, failures), [], failures
        )
        report.dispatch = _guarded("dispatch", self.dispatch, DispatchReport(), failures)
        return report

    def close(self) -> None:
        if self.dry_run is not None:
            self.dry_run.close()
        self.engine.dispose()


def _guarded(what: str, step: Callable[[], T], instead: T, failures: list[Failure]) -> T:
    """``step()``, or ``instead`` when it fails: the failure goes to ``failures`` and the
    log, and the pass goes on to its next step."""
    try:
        return step()
    except Exception as e:
        _step_failed(failures, what, e)
        return instead


def _step_failed(failures: list[Failure], what: str, error: Exception) -> None:
    failures.append(Failure("step", what, str(error) or type(error).__name__))
    # Ours (typed) or the database's: the message says it all. Anything else is a bug,
    # whose traceback belongs in the log.
    expected = isinstance(error, NewsBroadcastError | OperationalError)
    log.error("%s failed: %s", what, error, exc_info=None if expected else error)


def _single_connection(config: Config) -> Config:
    return config.model_copy(
        update={"email": config.email.model_copy(update={"transport": "file"})}
    )
