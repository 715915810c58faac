"""The composition root: builds the whole service from a Config, once, for the CLI and tests.

Each step here is idempotent (unique keys in the database make a repeat harmless), so the
scheduler may fire them as often as it likes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import jinja2
from sqlalchemy import Engine, select

from newsbroadcast import db
from newsbroadcast.channels import make_channel
from newsbroadcast.channels.base import Channel
from newsbroadcast.config import Config, Digest
from newsbroadcast.dispatch import Dispatcher, DispatchReport, story_view
from newsbroadcast.dryrun import DryChannel, DryRunDatabase, DryTransport, Tally
from newsbroadcast.ingest import PollReport, poll_all
from newsbroadcast.models import Article, ChannelState, utcnow
from newsbroadcast.planner import (
    PlannedEdition,
    articles_to_announce,
    bulk_plan_edition,
    due_period,
    insert_post,
    register_channels,
)
from newsbroadcast.render.email import EditionView, PreparedEdition, prepare_edition
from newsbroadcast.render.social import PostStory, render_post
from newsbroadcast.render.templates import html_to_text, make_environment
from newsbroadcast.transports import Transport, make_transport

log = logging.getLogger("newsbroadcast")


@dataclass
class PassReport:
    polls: list[PollReport] = field(default_factory=list)
    editions: list[PlannedEdition] = field(default_factory=list)
    posts_planned: int = 0
    dispatch: DispatchReport = field(default_factory=DispatchReport)


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
        self.engine = engine or db.make_engine(config.database_url)
        db.upgrade(self.engine)
        self.sessions = db.sessions(self.engine)
        # Dry run (see dryrun.py): one transaction rolled back at close, nothing handed over.
        self.dry_run: DryRunDatabase | None = None
        self.tally = Tally()
        if dry_run:
            self.dry_run = DryRunDatabase(self.engine.url)
            self.sessions = self.dry_run.sessions
        # A snapshot of the templates: a file saved broken on disk changes nothing until
        # a reload has checked it (see reload.py).
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
        with self.dispatcher._prepared_lock:
            self.dispatcher._prepared.clear()
        with self.sessions() as session:
            register_channels(session, [ch.name for ch in config.social], self.clock())

    def _prepare(self, digest: str, view: EditionView, language: str = "en") -> PreparedEdition:
        return prepare_edition(
            self.templates, self.config, self.config.digest(digest), view, language
        )

    # -- steps ----------------------------------------------------------------------------

    def poll(self, names: list[str] | None = None) -> list[PollReport]:
        """Read the named sources (all by default), then queue the posts their new
        articles call for."""
        reports = poll_all(self.sessions, self.config, self.clock(), self.http, names)
        self.plan_posts()
        return reports

    def plan_digest(self, digest: Digest, force: bool = False) -> PlannedEdition | None:
        now = self.clock()
        period = due_period(digest, now, force)
        if period is None:
            return None

        def subject_for(articles: list[Article]) -> str:
            view = EditionView(0, digest.name, period, now, [story_view(a) for a in articles])
            return prepare_edition(self.templates, self.config, digest, view).subject

        with self.sessions() as session:
            return bulk_plan_edition(session, digest, period, now, subject_for)

    def plan_digests(self, force: bool = False) -> list[PlannedEdition]:
        planned = (self.plan_digest(d, force) for d in self.config.digests)
        return [p for p in planned if p is not None]

    def plan_posts(self) -> int:
        now = self.clock()
        count = 0
        with self.sessions() as session:
            added = dict(session.execute(select(ChannelState.name, ChannelState.added_at)).all())
            for channel in self.config.social:
                template = self.templates.get_template(f"social/{channel.template}")
                for article in articles_to_announce(session, channel, added[channel.name], now):
                    story = PostStory(
                        title=article.title,
                        url=article.url,
                        summary=html_to_text(article.summary),
                        published_at=article.published_at,
                        author=article.author,
                        tags=tuple(article.tags or ()),
                    )
                    network = self.channels[channel.name]
                    text = render_post(template, story, network.limit, network.measure)
                    count += insert_post(session, article.id, channel.name, text, now)
            session.commit()
        if count:
            log.info("posts planned: %d", count)
        return count

    def dispatch(self) -> DispatchReport:
        return self.dispatcher.drain()

    def run_once(self, force: bool = False) -> PassReport:
        """One whole pass: poll, plan what is due, send everything due."""
        report = PassReport()
        report.polls = self.poll()
        report.editions = self.plan_digests(force)
        report.dispatch = self.dispatch()
        return report

    def close(self) -> None:
        if self.dry_run is not None:
            self.dry_run.close()
        self.engine.dispose()


def _single_connection(config: Config) -> Config:
    return config.model_copy(
        update={"email": config.email.model_copy(update={"transport": "file"})}
    )
