"""Publishing due posts on their channels, each channel at its pace; an outage is
waited out, only an answer to the post spends an attempt. (Part of ``Dispatcher``.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.channels.base import Channel, OutgoingPost, story_identity
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import Article, Post, SendStatus
from newsbroadcast.dispatch.report import DispatchReport
from newsbroadcast.errors import DeliveryError, PermanentSendError
from newsbroadcast.outbox import retry
from newsbroadcast.outbox.claim import claim, finish
from newsbroadcast.outbox.pacing import take_slot

log = logging.getLogger("newsbroadcast.dispatch")


class PostPublishing:
    """The social side of ``Dispatcher``: what it relies on is set up there."""

    config: Config
    sessions: sessionmaker[Session]
    channels: dict[str, Channel]
    clock: Callable[[], datetime]
    _outages: dict[str, int]
    _decide: Callable[..., retry.Retry | retry.GiveUp]
    _outage_over: Callable[[str], None]

    def publish_posts(self, deadline: float | None = None) -> DispatchReport:
        """Publish one claim of due posts; none past ``deadline`` (``time.monotonic()``)."""
        report = DispatchReport()
        if not self.channels or (deadline is not None and time.monotonic() >= deadline):
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
                    language=article.language,
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
                    self._retry_later(session, post, e)
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
                    finish(session, post, SendStatus.sent, self.clock())
                    self._outage_over(post.channel)
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

    def _retry_later(self, session: Session, row: Post, error: DeliveryError) -> bool:
        """Write the one retry rule's decision (outbox/retry.py) to ``row``, by its
        channel's retry settings: queued again (True) or failed (False)."""
        settings: Any = next(
            (c for c in self.config.social if c.name == row.channel), self.config.email
        )
        decision = self._decide(row.channel, settings, error, row.attempts)
        row.attempts = decision.attempts
        if isinstance(decision, retry.GiveUp):
            finish(session, row, SendStatus.failed, self.clock(), error=decision.reason)
            return False
        row.status = SendStatus.queued
        row.lease_until = None
        row.last_error = str(error)
        row.next_attempt_at = decision.at
        session.commit()
        return True
