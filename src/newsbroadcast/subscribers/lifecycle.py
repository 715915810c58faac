"""A subscriber's life: sign-up, confirmation, preferences, unsubscribe, bounces, erase.

Every function takes the session and ``now`` and leaves committing to the caller, so the web
app, the mailbox reader and the CLI share one set of rules.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    Delivery,
    ErasedDeliveries,
    SendStatus,
    SignupAttempt,
    Subscriber,
    SubscriberDigest,
    SubscriberStatus,
    SubscriberTopic,
)
from newsbroadcast.errors import InputError
from newsbroadcast.render import i18n
from newsbroadcast.subscribers.registry import email_key, normalize_email
from newsbroadcast.subscribers.suppressions import is_suppressed, suppress
from newsbroadcast.subscribers.tokens import InvalidToken

__all__ = [
    "Preferences",
    "SignupOutcome",
    "SignupRequest",
    "client_allowed",
    "client_retry_after",
    "confirm",
    "erase",
    "export_data",
    "find_by_email",
    "get_preferences",
    "record_bounce",
    "set_preferences",
    "languages",
    "sign_up",
    "signup",
    "unsubscribe",
]


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chose. Empty ``digests``/``topics`` mean all of them."""

    digests: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    language: str = "en"
    paused: bool = False
    name: str | None = None


@dataclass(frozen=True)
class SignupRequest:
    email: str
    preferences: Preferences


@dataclass(frozen=True)
class SignupOutcome:
    """What a sign-up led to. ``to_confirm``: the subscriber to send a confirmation email to.
    ``last_sent_at``/``next_at``: set when a link went out to this (not yet subscribed) address
    less than ``web.resend_after`` ago, so none is sent now: when it went, and from when
    another may be asked for. Neither: nothing to send and nothing to say (the address is
    suppressed, bounced or already subscribed; the page must not tell which)."""

    to_confirm: Subscriber | None = None
    last_sent_at: datetime | None = None
    next_at: datetime | None = None


def languages(config: Config) -> list[str]:
    """The languages the site offers, its default first (see i18n.offered_languages)."""
    return i18n.offered_languages(
        config.web.languages, config.site.language, config.path(config.templates)
    )


def clean_preferences(config: Config, prefs: Preferences) -> Preferences:
    """``prefs`` limited to what the config offers; anything else is dropped, not stored."""
    offered_digests = {d.name for d in config.digests}
    offered_topics = {t.casefold(): t for t in config.web.topics}
    digests = tuple(sorted({d for d in prefs.digests if d in offered_digests}))
    topics = tuple(sorted({t.casefold() for t in prefs.topics if t.casefold() in offered_topics}))
    langs = languages(config)
    language = prefs.language if prefs.language in langs else langs[0]
    name = (prefs.name or "").strip()[:200] or None
    return Preferences(digests, topics, language, prefs.paused, name)


def find_by_email(session: Session, address: str) -> Subscriber | None:
    return session.scalar(
        select(Subscriber).where(Subscriber.email_key == email_key(address.strip()))
    )


# --- sign-up --------------------------------------------------------------------------------


def client_allowed(session: Session, config: Config, client: str, now: datetime) -> bool:
    """Count this sign-up against ``client`` (an IP address); False once over the limit.

    Kept in the database so it holds across processes; the client is stored hashed.
    """
    window = config.web.signup_window
    key = _client_key(config, client)
    session.execute(delete(SignupAttempt).where(SignupAttempt.created_at <= now - window))
    recent = session.scalar(
        select(func.count())
        .select_from(SignupAttempt)
        .where(SignupAttempt.client == key, SignupAttempt.created_at > now - window)
    )
    if (recent or 0) >= config.web.signups_per_client:
        return False
    session.add(SignupAttempt(client=key, created_at=now))
    session.flush()
    return True


def _client_key(config: Config, client: str) -> str:
    return hashlib.sha256(f"{config.site.secret}:{client}".encode()).hexdigest()


def client_retry_after(session: Session, config: Config, client: str, now: datetime) -> int:
    """Whole seconds (at least 1) until ``client`` may sign up again: when its oldest
    sign-up still counted leaves the window (for a 429's Retry-After)."""
    oldest = session.scalar(
        select(func.min(SignupAttempt.created_at)).where(
            SignupAttempt.client == _client_key(config, client),
            SignupAttempt.created_at > now - config.web.signup_window,
        )
    )
    if oldest is None:
        return 1
    wait = (oldest + config.web.signup_window - now).total_seconds()
    return max(1, math.ceil(wait))


def signup(
    session: Session, config: Config, request: SignupRequest, now: datetime
) -> Subscriber | None:
    """Record a sign-up; the subscriber to send a confirmation email to, or None
    (``sign_up`` says why not)."""
    return sign_up(session, config, request, now).to_confirm


def sign_up(
    session: Session, config: Config, request: SignupRequest, now: datetime
) -> SignupOutcome:
    """Record a sign-up: see SignupOutcome.

    Nothing to send when the address is suppressed, already active, or was sent a
    confirmation less than ``web.resend_after`` ago. An active subscriber's preferences
    are never changed from here: only their own signed link may do that.
    Raises InputError for an address that is not an address.
    """
    address = normalize_email(request.email)
    if is_suppressed(session, address):
        return SignupOutcome()
    prefs = clean_preferences(config, request.preferences)
    sub = find_by_email(session, address)
    if sub is None:
        sub = Subscriber(
            email=address,
            email_key=email_key(address),
            status=SubscriberStatus.pending,
            created_at=now,
            updated_at=now,
        )
        session.add(sub)
        session.flush()
    else:
        if sub.status in (SubscriberStatus.active, SubscriberStatus.bounced):
            return SignupOutcome()
        last = sub.confirmation_sent_at
        if last is not None and now - last < config.web.resend_after:
            return SignupOutcome(last_sent_at=last, next_at=last + config.web.resend_after)
    # Pending or unsubscribed: (re)start the double opt-in with the preferences just given.
    # The new confirmation_sent_at retires the links sent for an earlier sign-up (confirm).
    if sub.status == SubscriberStatus.unsubscribed:
        sub.status = SubscriberStatus.pending
    sub.name = prefs.name
    _store_preferences(session, sub, prefs)
    sub.confirmation_sent_at = now
    sub.updated_at = now
    session.flush()
    return SignupOutcome(to_confirm=sub)


def confirm(
    session: Session, subscriber_id: int, now: datetime, signed_up_at: datetime | None = None
) -> Subscriber | None:
    """Activate a pending subscriber (an active one stays so). None if the subscriber is
    gone, suppressed, bounced, or unsubscribed since the link was sent: confirming an old
    link must not undo a later unsubscribe.

    ``signed_up_at``: the sign-up the link was sent for (its token's stamp). Only that
    sign-up's link confirms: one from an earlier sign-up raises InvalidToken("replaced").
    Links made before tokens carried it (None) are taken as they were."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None or is_suppressed(session, sub.email):
        return None
    latest = sub.confirmation_sent_at
    if signed_up_at is not None and latest is not None and _utc(latest) != _utc(signed_up_at):
        raise InvalidToken(
            "replaced", "this link was replaced by a newer one; use the most recent email"
        )
    if sub.status == SubscriberStatus.pending:
        sub.status = SubscriberStatus.active
        sub.confirmed_at = now
        sub.updated_at = now
        session.flush()
    return sub if sub.status == SubscriberStatus.active else None


def _utc(moment: datetime) -> datetime:
    # The database gives naive UTC on some paths; the token's stamp is aware UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- preferences ----------------------------------------------------------------------------


def get_preferences(session: Session, sub: Subscriber) -> Preferences:
    digests = session.scalars(
        select(SubscriberDigest.digest).where(SubscriberDigest.subscriber_id == sub.id)
    ).all()
    topics = session.scalars(
        select(SubscriberTopic.topic).where(SubscriberTopic.subscriber_id == sub.id)
    ).all()
    return Preferences(
        tuple(sorted(digests)), tuple(sorted(topics)), sub.language, sub.paused, sub.name
    )


def set_preferences(
    session: Session, config: Config, sub: Subscriber, prefs: Preferences, now: datetime
) -> Preferences:
    """Store ``prefs`` (cleaned against the config); they apply from the next edition."""
    cleaned = clean_preferences(config, prefs)
    if config.digests and not cleaned.digests and prefs.digests:
        raise InputError("none of the chosen digests exists")
    sub.name = cleaned.name
    _store_preferences(session, sub, cleaned)
    sub.updated_at = now
    session.flush()
    return cleaned


def _store_preferences(session: Session, sub: Subscriber, prefs: Preferences) -> None:
    sub.language = prefs.language
    sub.paused = prefs.paused
    session.execute(delete(SubscriberDigest).where(SubscriberDigest.subscriber_id == sub.id))
    session.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == sub.id))
    session.add_all(SubscriberDigest(subscriber_id=sub.id, digest=d) for d in prefs.digests)
    session.add_all(SubscriberTopic(subscriber_id=sub.id, topic=t) for t in prefs.topics)


# --- leaving --------------------------------------------------------------------------------


def unsubscribe(session: Session, subscriber_id: int, now: datetime) -> Subscriber | None:
    """Unsubscribe at once. Deliveries already queued are skipped by the dispatcher, which
    checks the status at send time. Idempotent; None if there is no such subscriber."""
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        return None
    if sub.status in (SubscriberStatus.active, SubscriberStatus.pending):
        sub.status = SubscriberStatus.unsubscribed
        sub.unsubscribed_at = now
        sub.updated_at = now
        session.flush()
    return sub


def record_bounce(
    session: Session, config: Config, address: str, hard: bool, reason: str, now: datetime
) -> Subscriber | None:
    """A bounce for ``address``: a hard one suppresses it and marks the subscriber bounced;
    a soft one is counted, and ``bounces.soft_bounce_limit`` of them count as hard."""
    sub = find_by_email(session, address)
    limit = (config.bounce_settings or config.bounces).soft_bounce_limit
    if not hard and sub is not None:
        sub.soft_bounce_count += 1
        sub.updated_at = now
        hard = sub.soft_bounce_count >= limit
        reason = f"{sub.soft_bounce_count} soft bounces, last: {reason}" if hard else reason
    if hard:
        suppress(session, address, f"bounce: {reason}", now)
        if sub is not None and sub.status != SubscriberStatus.unsubscribed:
            sub.status = SubscriberStatus.bounced
            sub.updated_at = now
    session.flush()
    return sub


def export_data(session: Session, sub: Subscriber) -> dict[str, Any]:
    """Everything stored about one subscriber, for a data-access request."""
    prefs = get_preferences(session, sub)
    deliveries = session.execute(
        select(Delivery.edition_id, Delivery.status, Delivery.sent_at, Delivery.message_id)
        .where(Delivery.subscriber_id == sub.id)
        .order_by(Delivery.id)
    ).all()

    def when(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "id": sub.id,
        "email": sub.email,
        "name": sub.name,
        "language": sub.language,
        "status": str(sub.status),
        "created_at": when(sub.created_at),
        "confirmed_at": when(sub.confirmed_at),
        "unsubscribed_at": when(sub.unsubscribed_at),
        "bounce_count": sub.bounce_count,
        "soft_bounce_count": sub.soft_bounce_count,
        "preferences": {
            "digests": list(prefs.digests),
            "topics": list(prefs.topics),
            "paused": prefs.paused,
        },
        "deliveries": [
            {"edition": e, "status": str(s), "sent_at": when(t), "message_id": m}
            for e, s, t, m in deliveries
        ],
    }


def erase(session: Session, sub: Subscriber, now: datetime, keep_suppressed: bool = True) -> int:
    """Delete the subscriber and everything naming them; what remains is the number of
    deliveries per edition and outcome, with no one's name on it. With ``keep_suppressed``
    the address's hash stays on the suppression list, so an old import cannot bring it back.
    Returns the number of deliveries folded into the anonymous counts."""
    counts: Sequence[tuple[int, SendStatus, int]] = (
        session.execute(
            select(Delivery.edition_id, Delivery.status, func.count())
            .where(Delivery.subscriber_id == sub.id)
            .group_by(Delivery.edition_id, Delivery.status)
        )
        .tuples()
        .all()
    )
    for edition_id, status, n in counts:
        row = session.get(ErasedDeliveries, (edition_id, str(status)))
        if row is None:
            session.add(ErasedDeliveries(edition_id=edition_id, status=str(status), count=n))
        else:
            row.count += n
    if keep_suppressed:
        suppress(session, sub.email, "erased on request", now)
    session.execute(delete(Delivery).where(Delivery.subscriber_id == sub.id))
    session.execute(delete(SubscriberDigest).where(SubscriberDigest.subscriber_id == sub.id))
    session.execute(delete(SubscriberTopic).where(SubscriberTopic.subscriber_id == sub.id))
    session.delete(sub)
    session.flush()
    return sum(n for _, _, n in counts)
