"""The tables. Every piece of progress lives in a row with a unique key, never in a cursor."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, PostgreSQL does."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Ids of the rows made per message (deliveries, posts): years of history outgrow 32 bits.
# SQLite keeps INTEGER, its 64-bit rowid alias (a BIGINT primary key would not autoincrement).
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class SubscriberStatus(enum.StrEnum):
    pending = "pending"
    active = "active"
    unsubscribed = "unsubscribed"
    bounced = "bounced"


class SendStatus(enum.StrEnum):
    """The state machine shared by deliveries and posts: queued → sending → sent | failed.

    ``skipped`` ends a row that must not go out any more (the subscriber left meanwhile).
    """

    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    skipped = "skipped"


class EditionStatus(enum.StrEnum):
    sending = "sending"
    done = "done"
    paused = "paused"
    cancelled = "cancelled"


class SourceState(Base):
    """What we remember about one configured source between polls."""

    __tablename__ = "source_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    # An sql source's position (JSON: the cursor column's last value), committed with the rows.
    cursor: Mapped[str | None] = mapped_column(Text)
    # What the last successful poll had to leave out, each with where (URL, row), one a line.
    last_problems: Mapped[str | None] = mapped_column(Text)
    # When a poll first read the source to its end: what it stored until then is the
    # source's archive (Article.archive), met for the first time, not news.
    caught_up_at: Mapped[datetime | None]
    # Things polls did worth knowing (an archive met, a date taken as first seen), newest
    # first, one a line; kept across polls, the last few.
    notes: Mapped[str | None] = mapped_column(Text)


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (UniqueConstraint("source", "guid", name="uq_articles_source_guid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    guid: Mapped[str] = mapped_column(String(1000))
    url: Mapped[str | None] = mapped_column(Text)
    # Unique when present: the same story reached by two GUIDs (or two sources) is one article.
    canonical_url: Mapped[str | None] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(default=list)
    # BCP 47 tag from the source (feed language, dc:language, <html lang>); None: unknown.
    language: Mapped[str | None] = mapped_column(String(35))
    published_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Stored while its source was first read (a site's back catalogue): never announced on
    # a channel, except among the newest `backfill`, whatever its date.
    archive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased address: uniqueness is case-insensitive without relying on a DB collation.
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(16), default="en")
    status: Mapped[SubscriberStatus] = mapped_column(
        String(16), default=SubscriberStatus.pending, index=True
    )
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    # Preferences (the subscriber's own, from the preferences page). A paused subscriber
    # stays active but gets no edition; digests and topics live in their own tables.
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the last confirmation email was queued (its sign-up): at most one per address
    # per resend_after.
    confirmation_sent_at: Mapped[datetime | None]
    soft_bounce_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SubscriberDigest(Base):
    """A digest the subscriber chose. None chosen means every digest (the default)."""

    __tablename__ = "subscriber_digests"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(200), primary_key=True)


class SubscriberTopic(Base):
    """A topic (article tag, case-folded) the subscriber chose. None chosen means all."""

    __tablename__ = "subscriber_topics"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(String(200), primary_key=True)


class Suppression(Base):
    """An address that must never be added or mailed again (hard bounce, complaint, erase,
    admin). Kept as a SHA-256 of the lower-cased address, so an erased person's address is
    not stored in the clear."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignupAttempt(Base):
    """One sign-up request from a client (hashed address): the per-client rate limit counts
    these rows, so it holds across processes. Old rows are pruned as new ones come."""

    __tablename__ = "signup_attempts"
    __table_args__ = (Index("ix_signup_attempts_client_at", "client", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ErasedDeliveries(Base):
    """What remains of deliveries no longer kept one by one: counts per edition and
    outcome, of erased subscribers' and of those older than ``retention.deliveries``
    (outbox/retention.py). Every count of an edition's deliveries adds these."""

    __tablename__ = "erased_deliveries"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(BigId, default=0)


class Edition(Base):
    """One issue of one digest. (digest, period) is unique: a second trigger finds it taken."""

    __tablename__ = "editions"
    __table_args__ = (UniqueConstraint("digest", "period", name="uq_editions_digest_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(64))
    status: Mapped[EditionStatus] = mapped_column(String(16), default=EditionStatus.sending)
    subject: Mapped[str] = mapped_column(Text)
    # Articles first seen up to this moment belong to this edition or an earlier one; one
    # stored after it (a slow poll's), to the next (planner.edition_stories).
    cutoff: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The automatic pause judges only outcomes after this moment: set when it pauses the
    # edition, so a resumed edition starts a fresh window.
    autopause_from: Mapped[datetime | None]


class EditionArticle(Base):
    __tablename__ = "edition_articles"

    edition_id: Mapped[int] = mapped_column(
        ForeignKey("editions.id", ondelete="CASCADE"), primary_key=True
    )
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class OutboxRow:
    """Columns shared by deliveries and posts: the dispatcher's state machine."""

    status: Mapped[SendStatus] = mapped_column(String(16), default=SendStatus.queued)
    # Attempts the message itself caused to fail (a refusal of it); an outage, a lost
    # connection or a crash never counts here, so they cannot make a message give up.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # How often the row was claimed: the claim's identity, so a dispatcher whose lease ran
    # out can tell that another one has taken the row since.
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While `sending`, the row belongs to one dispatcher until this moment; after it, to anyone.
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class Delivery(OutboxRow, Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "subscriber_id", name="uq_deliveries_edition_subscriber"),
        # On PostgreSQL only due rows (migration 0017): a row recorded `sent` then adds no
        # entry, and the index stays the size of the queue. The claim repeats the
        # predicate (outbox/claim.py DUE) so that even a generic plan can use it.
        Index(
            "ix_deliveries_due",
            "status",
            "next_attempt_at",
            "id",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        # The automatic pause reads an edition's latest outcomes by time. On PostgreSQL
        # only rows with such a time are indexed: the fan-out's INSERT and the claim's
        # UPDATE (neither time set yet) then maintain two indexes fewer per row.
        Index(
            "ix_deliveries_edition_sent",
            "edition_id",
            "sent_at",
            postgresql_where=text("sent_at IS NOT NULL"),
        ),
        Index(
            "ix_deliveries_edition_refused",
            "edition_id",
            "refused_at",
            postgresql_where=text("refused_at IS NOT NULL"),
        ),  # fmt: skip
        # A bounce (VERP) or a complaint (ARF) names the message it is about.
        # Partial on PostgreSQL: the fan-out and the claim (no Message-ID yet) add no entry;
        # a lookup by equality implies IS NOT NULL, so it still uses the index.
        Index(
            "ix_deliveries_message_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    # When the receiver last refused this message (a reply to it): an outcome the
    # automatic pause counts, next to sent_at.
    refused_at: Mapped[datetime | None]


class TransactionalEmail(OutboxRow, Base):
    """One email a person asked for (the double opt-in confirmation): queued by the web
    request, sent by the dispatcher through the digests' transport, rate limit and retry
    rule. ``key`` comes from what the email is (purpose, address, the sign-up it answers),
    so a double submit or a retried request queues it once."""

    __tablename__ = "transactional_emails"
    __table_args__ = (
        UniqueConstraint("key", name="uq_transactional_emails_key"),
        Index("ix_transactional_emails_due", "status", "next_attempt_at", "id"),
        Index("ix_transactional_emails_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    # The link in it stops working then, counted from the request (as when it was sent at once).
    expires_at: Mapped[datetime]
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    refused_at: Mapped[datetime | None]


class ChannelState(Base):
    """When a channel was first configured: older articles are not announced on it (no flood)."""

    __tablename__ = "channel_state"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The channel's pace: no post on it may start before this moment (taken atomically by
    # whichever dispatcher posts next, so the pace holds across processes and restarts).
    next_post_at: Mapped[datetime | None]


class Post(OutboxRow, Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("article_id", "channel", name="uq_posts_article_channel"),
        Index("ix_posts_due", "status", "next_attempt_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(200))
    # Rendered once, before the first attempt: every retry sends exactly these characters.
    text: Mapped[str] = mapped_column(Text)
    remote_id: Mapped[str | None] = mapped_column(Text)
    remote_url: Mapped[str | None] = mapped_column(Text)
    # Committed just before the first request leaves: a later attempt knows an earlier one
    # may have been accepted (and since when) and settles that before posting again.
    first_attempt_at: Mapped[datetime | None]


class RateLimitLock(Base):
    """One row per transport, updated to take the lock that serialises taking send slots
    across every dispatcher (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "rate_limit_locks"

    transport: Mapped[str] = mapped_column(String(200), primary_key=True)
    touched_at: Mapped[datetime | None]


class SendSlot(Base):
    """One message a transport was allowed to send at ``taken_at``: the sliding windows of
    its rate limit are counts of these rows. Rows older than the longest window are deleted."""

    __tablename__ = "send_slots"
    __table_args__ = (Index("ix_send_slots_transport_taken", "transport", "taken_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transport: Mapped[str] = mapped_column(String(200))
    taken_at: Mapped[datetime]
    # When the message's transaction ended (the server's reply came): the slot stays in the
    # window until one window after this. Unset while the message is on its way.
    released_at: Mapped[datetime | None]


class StepFailure(Base):
    """A channel or digest that could not be planned (its template fails): which, why and
    since when, for `status`. Deleted when it next plans without failing."""

    __tablename__ = "step_failures"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # channel | digest
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    error: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime]
    last_at: Mapped[datetime]


class DigestLock(Base):
    """One row per digest, updated to take the lock that serialises planning its editions
    (a row lock on PostgreSQL, the write lock on SQLite): a second trigger, forced or not,
    plans only after the first committed, and so reads the cutoff the first one set."""

    __tablename__ = "digest_locks"

    digest: Mapped[str] = mapped_column(String(200), primary_key=True)
    touched_at: Mapped[datetime | None]


class FeedbackReceipt(Base):
    """A bounce or complaint a provider's webhook reported, or a Mailgun token, already
    handled: a provider's retry of the same event (or a replayed request) finds its key
    here and changes nothing. ``key`` is a SHA-256 of the provider, its event id and the
    address (or of the token), so no address is kept in the clear."""

    __tablename__ = "feedback_receipts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # hard | soft | complaint | token
    received_at: Mapped[datetime] = mapped_column(index=True)
