"""Recording what providers' webhooks report, once each.

Hard bounces go through ``lifecycle.record_bounce`` (the address is suppressed and its
subscriber marked bounced), soft ones are counted by the same function (its
``bounces.soft_bounce_limit`` turns them hard), complaints suppress the address and
unsubscribe its subscriber. Each event with a provider id leaves a receipt
(``feedback_receipts``): a provider retrying the same event changes nothing, nor does a
Mailgun request whose token was seen. One request is one transaction: either all its
events count or none does, and the provider's retry finishes the job.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from newsbroadcast.config.model import Config
from newsbroadcast.db.models import FeedbackReceipt
from newsbroadcast.errors import FeedbackRejected
from newsbroadcast.subscribers.feedback import Feedback, FeedbackEvent, FeedbackKind
from newsbroadcast.subscribers.lifecycle import find_by_email, record_bounce, unsubscribe
from newsbroadcast.subscribers.suppressions import suppress

__all__ = ["FeedbackOutcome", "record_feedback"]

log = logging.getLogger("newsbroadcast.feedback")

# Providers retry for up to three days (SendGrid 72 h); receipts are kept well past that.
KEEP_RECEIPTS = timedelta(days=30)
# Two requests carrying the same new event race for its receipt; the loser starts over
# and then finds it.
_ATTEMPTS = 3


@dataclass(frozen=True)
class FeedbackOutcome:
    recorded: int = 0
    duplicates: int = 0  # already recorded from an earlier request
    ignored: int = 0  # nothing held against an address


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def event_key(provider: str, event: FeedbackEvent) -> str | None:
    """The receipt key of ``event``: from the provider, its id and the address (one SES
    bounce names several recipients under one id)."""
    if event.event_id is None:
        return None
    return _key(provider, event.event_id, event.address.strip().lower())


def record_feedback(
    sessions: sessionmaker[Session],
    config: Config,
    provider: str,
    feedback: Feedback,
    now: datetime,
    token: str | None = None,
) -> FeedbackOutcome:
    """Record ``feedback``'s events in one transaction. ``token``: a one-time request
    token (Mailgun's); raises FeedbackRejected 403 ``replayed`` when it was seen."""
    for attempt in range(_ATTEMPTS):
        with sessions() as session:
            try:
                outcome = _record(session, config, provider, feedback, now, token)
                session.commit()
                return outcome
            except IntegrityError:
                session.rollback()
                if attempt == _ATTEMPTS - 1:
                    raise
    raise AssertionError("unreachable")


def _record(
    session: Session,
    config: Config,
    provider: str,
    feedback: Feedback,
    now: datetime,
    token: str | None,
) -> FeedbackOutcome:
    if token is not None:
        token_key = _key(provider, "token", token)
        if session.get(FeedbackReceipt, token_key) is not None:
            raise FeedbackRejected(403, "replayed", "this signed request was received before")
        _receipt(session, token_key, provider, "token", now)
    recorded = duplicates = 0
    for event in feedback.events:
        key = event_key(provider, event)
        if key is not None:
            if session.get(FeedbackReceipt, key) is not None:
                duplicates += 1
                continue
            _receipt(session, key, provider, event.kind, now)
        _apply(session, config, provider, event, now)
        recorded += 1
    session.execute(
        delete(FeedbackReceipt).where(FeedbackReceipt.received_at < now - KEEP_RECEIPTS)
    )
    if recorded:
        log.info(
            "%s webhook: %d recorded, %d duplicates, %d ignored",
            provider,
            recorded,
            duplicates,
            feedback.ignored,
        )
    return FeedbackOutcome(recorded, duplicates, feedback.ignored)


def _receipt(session: Session, key: str, provider: str, kind: str, now: datetime) -> None:
    session.add(FeedbackReceipt(key=key, provider=provider, kind=kind, received_at=now))
    session.flush()  # a concurrent request's receipt conflicts here, before any change


def _apply(
    session: Session, config: Config, provider: str, event: FeedbackEvent, now: datetime
) -> None:
    reason = f"{provider}: {event.reason}"
    if event.kind == FeedbackKind.complaint:
        suppress(session, event.address, f"complaint: {reason}", now)
        sub = find_by_email(session, event.address)
        if sub is not None:
            unsubscribe(session, sub.id, now)
        return
    record_bounce(session, config, event.address, event.kind == FeedbackKind.hard, reason, now)
