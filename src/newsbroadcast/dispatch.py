"""The dispatcher owns delivery state: claim due rows, send, record the outcome, retry.

Every row moves queued → sending → sent | failed (or skipped). A claim is a lease: a
dispatcher that dies leaves its rows to be taken again once the lease runs out, and the
message then goes out with the same Message-ID so a receiver can drop the duplicate.
Outcomes are committed one message at a time, so a kill repeats at most the message that
was on the wire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.channels.base import Channel, OutgoingPost
from newsbroadcast.config import Config
from newsbroadcast.errors import DeliveryError, PermanentSendError, RateLimited, TransportDown
from newsbroadcast.models import (
    Article,
    Delivery,
    Edition,
    EditionArticle,
    EditionStatus,
    Post,
    SendStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsbroadcast.render.email import (
    EditionView,
    PreparedEdition,
    Recipient,
    StoryView,
    make_message_id,
)
from newsbroadcast.transports.base import Envelope, Transport

log = logging.getLogger("newsbroadcast.dispatch")

MAX_BACKOFF = timedelta(hours=6)


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
    """base, 2·base, 4·base, … capped at six hours."""
    return min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def claim(
    session: Session,
    model: type[Delivery] | type[Post],
    now: datetime,
    lease: timedelta,
    limit: int,
    extra: Sequence[Any] = (),
) -> list[int]:
    """Take up to ``limit`` due rows: queued and due, or `sending` with an expired lease.

    One UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) … RETURNING: on PostgreSQL
    concurrent dispatchers get disjoint rows without waiting on each other; on SQLite the
    statement holds the write lock, which serialises claims just as well.
    """
    due = or_(
        and_(model.status == SendStatus.queued, model.next_attempt_at <= now),
        and_(model.status == SendStatus.sending, model.lease_until < now),
    )
    pick = select(model.id).where(due, *extra).order_by(model.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(model)
        .where(model.id.in_(pick.scalar_subquery()))
        .values(status=SendStatus.sending, lease_until=now + lease, attempts=model.attempts + 1)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    ids = sorted(session.scalars(stmt))
    session.commit()
    return ids


class Dispatcher:
    """Sends what the planner queued. Safe to run in many processes on one PostgreSQL."""

    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        transport: Callable[[], Transport],
        channels: dict[str, Channel],
        prepare: Callable[[str, EditionView], PreparedEdition],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.make_transport = transport
        self.channels = channels
        self.prepare = prepare
        self.clock = clock
        self._prepared: dict[int, PreparedEdition] = {}  # edition id → rendered once

    # -- the loop -----------------------------------------------------------------------------

    def drain(self) -> DispatchReport:
        """Send everything due now; return when nothing due is left."""
        total = DispatchReport()
        while True:
            report = self.dispatch_once()
            total.add(report)
            if report.handled == 0:
                return total

    def dispatch_once(self) -> DispatchReport:
        report = DispatchReport()
        report.add(self.send_deliveries())
        report.add(self.publish_posts())
        self.finish_editions()
        return report

    # -- email --------------------------------------------------------------------------------

    def send_deliveries(self) -> DispatchReport:
        report = DispatchReport()
        email = self.config.email
        with self.sessions() as session:
            sending_edition = exists().where(
                Edition.id == Delivery.edition_id, Edition.status == EditionStatus.sending
            )
            ids = claim(
                session,
                Delivery,
                self.clock(),
                self.config.scheduler.lease,
                email.batch_size,
                [sending_edition],
            )
            if not ids:
                return report
            rows = session.execute(
                select(Delivery, Subscriber)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.id.in_(ids))
                .order_by(Delivery.id)
            ).all()
            sender = parseaddr(self.config.site.sender)[1]
            with self.make_transport() as transport:
                for n, (delivery, subscriber) in enumerate(rows):
                    if subscriber.status != SubscriberStatus.active:
                        self._finish(
                            session,
                            delivery,
                            SendStatus.skipped,
                            error=f"subscriber is {subscriber.status}",
                        )
                        report.skipped += 1
                        continue
                    prepared = self._prepared_edition(session, delivery.edition_id)
                    message_id = make_message_id(self.config, delivery.edition_id, subscriber.id)
                    recipient = Recipient(subscriber.id, subscriber.email, subscriber.name)
                    try:
                        data = prepared.message(recipient, message_id, self.clock())
                        reply = transport.send(Envelope(sender, subscriber.email, data, message_id))
                    except PermanentSendError as e:
                        self._fail_permanently(session, delivery, subscriber, e)
                        report.failed += 1
                        report.errors.append(f"delivery {delivery.id}: {e}")
                    except DeliveryError as e:
                        report.errors.append(f"delivery {delivery.id}: {e}")
                        if self._retry_later(session, delivery, e):
                            report.retried += 1
                        else:
                            report.failed += 1
                        if isinstance(e, TransportDown):
                            # The server is unwell: hand the rest of the batch back untouched
                            # rather than spend an attempt of each on a known-bad connection.
                            self._release(session, Delivery, [d.id for d, _ in rows[n + 1 :]])
                            break
                    else:
                        delivery.smtp_reply = reply
                        delivery.message_id = message_id
                        self._finish(session, delivery, SendStatus.sent)
                        report.sent += 1
        if report.handled:
            log.info(
                "deliveries: sent=%d retried=%d failed=%d skipped=%d",
                report.sent,
                report.retried,
                report.failed,
                report.skipped,
            )
        return report

    def _prepared_edition(self, session: Session, edition_id: int) -> PreparedEdition:
        if edition_id not in self._prepared:
            edition = session.get_one(Edition, edition_id)
            articles = session.scalars(
                select(Article)
                .join(EditionArticle, EditionArticle.article_id == Article.id)
                .where(EditionArticle.edition_id == edition_id)
                .order_by(EditionArticle.position)
            ).all()
            view = EditionView(
                id=edition.id,
                digest=edition.digest,
                period=edition.period,
                created_at=edition.created_at,
                stories=[story_view(a) for a in articles],
            )
            self._prepared[edition_id] = self.prepare(edition.digest, view)
        return self._prepared[edition_id]

    def _fail_permanently(
        self, session: Session, delivery: Delivery, subscriber: Subscriber, error: DeliveryError
    ) -> None:
        delivery.smtp_reply = error.reply
        subscriber.bounce_count += 1
        if subscriber.bounce_count >= self.config.email.bounce_after:
            subscriber.status = SubscriberStatus.bounced
            subscriber.updated_at = self.clock()
            log.warning(
                "subscriber %s marked bounced after %d permanent failures",
                subscriber.id,
                subscriber.bounce_count,
            )
        self._finish(session, delivery, SendStatus.failed, error=str(error))

    # -- social -------------------------------------------------------------------------------

    def publish_posts(self) -> DispatchReport:
        report = DispatchReport()
        if not self.channels:
            return report
        with self.sessions() as session:
            known = Post.channel.in_(list(self.channels))
            ids = claim(session, Post, self.clock(), self.config.scheduler.lease, 20, [known])
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
                    post.id, article.id, post.channel, post.text, article.url, article.title
                )
                try:
                    published = channel.publish(outgoing)
                except PermanentSendError as e:
                    self._finish(session, post, SendStatus.failed, error=str(e))
                    report.failed += 1
                    report.errors.append(f"post {post.id} on {post.channel}: {e}")
                except DeliveryError as e:
                    report.errors.append(f"post {post.id} on {post.channel}: {e}")
                    if self._retry_later(session, post, e):
                        report.retried += 1
                    else:
                        report.failed += 1
                else:
                    post.remote_id = published.remote_id
                    post.remote_url = published.remote_url
                    self._finish(session, post, SendStatus.sent)
                    report.sent += 1
        if report.handled:
            log.info(
                "posts: sent=%d retried=%d failed=%d", report.sent, report.retried, report.failed
            )
        return report

    # -- shared state machine -----------------------------------------------------------------

    def _finish(
        self, session: Session, row: Delivery | Post, status: SendStatus, error: str | None = None
    ) -> None:
        row.status = status
        row.lease_until = None
        row.last_error = error
        if status == SendStatus.sent:
            row.sent_at = self.clock()
        session.commit()

    def _retry_later(self, session: Session, row: Delivery | Post, error: DeliveryError) -> bool:
        """Queue ``row`` again after a backoff; False (and failed) once attempts run out."""
        if row.attempts >= self.config.email.max_attempts:
            self._finish(session, row, SendStatus.failed, error=f"gave up: {error}")
            return False
        delay = (
            timedelta(seconds=error.retry_after)
            if isinstance(error, RateLimited)
            else backoff(self.config.email.retry_after, row.attempts)
        )
        row.status = SendStatus.queued
        row.lease_until = None
        row.last_error = str(error)
        row.next_attempt_at = self.clock() + delay
        if isinstance(row, Delivery):
            row.smtp_reply = error.reply
        session.commit()
        return True

    def _release(
        self, session: Session, model: type[Delivery] | type[Post], ids: list[int]
    ) -> None:
        """Give claimed rows back without counting the attempt they never had."""
        if not ids:
            return
        session.execute(
            update(model)
            .where(model.id.in_(ids), model.status == SendStatus.sending)
            .values(
                status=SendStatus.queued,
                lease_until=None,
                attempts=model.attempts - 1,
                next_attempt_at=self.clock() + self.config.email.retry_after,
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()

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


def story_view(article: Article) -> StoryView:
    return StoryView(
        title=article.title,
        url=article.url,
        summary=article.summary,
        published_at=article.published_at,
        image=article.image,
        author=article.author,
        tags=tuple(article.tags or ()),
    )
