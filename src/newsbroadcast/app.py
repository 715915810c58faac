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
from sqlalchemy import Engine, select

from newsbroadcast import db
from newsbroadcast.channels import make_channel
from newsbroadcast.channels.base import Channel
from newsbroadcast.config import Config, Digest
from newsbroadcast.dispatch import Dispatcher, DispatchReport, story_view
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
from newsbroadcast.transports import make_transport

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
    ) -> None:
        self.config = config
        self.clock = clock
        self.http = http
        self.engine = engine or db.make_engine(config.database_url)
        db.upgrade(self.engine)
        self.sessions = db.sessions(self.engine)
        self.templates = make_environment(config.path(config.templates))
        self.channels: dict[str, Channel] = {
            ch.name: make_channel(ch, config) for ch in config.social
        }
        self.dispatcher = Dispatcher(
            config,
            self.sessions,
            transport=lambda: make_transport(config),
            channels=self.channels,
            prepare=self._prepare,
            clock=clock,
        )
        with self.sessions() as session:
            register_channels(session, [ch.name for ch in config.social], clock())

    def _prepare(self, digest: str, view: EditionView) -> PreparedEdition:
        return prepare_edition(self.templates, self.config, self.config.digest(digest), view)

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
        self.engine.dispose()
