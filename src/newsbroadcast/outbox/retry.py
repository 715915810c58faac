"""The one retry rule for every outbox row (deliveries, posts, transactional emails).

Pure: given how often the message itself has failed, its retry settings, the error and
now, it says when to try again, or that it is time to give up and why. The callers write
the decision to their rows (SQL for deliveries, the ORM for posts); none of them decides.

Only what the message caused counts: a reply refusing it spends one of its attempts and
waits a backoff that doubles per attempt. No reply at all (the connection, the server
down) or a request to wait (``RateLimited``) spends none: an outage waits
``retry_after``, doubling per outage in a row, at most ``outage_wait_max``; a rate limit
waits the ``retry_after`` it was given. A permanent refusal gives up at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from newsbroadcast.errors import DeliveryError, PermanentSendError, RateLimited, TransportDown
from newsbroadcast.outbox.claim import backoff

__all__ = ["GiveUp", "Retry", "RetrySettings", "caused_by_message", "decide"]


class RetrySettings(Protocol):
    """What ``email`` and each social channel configure (config.model)."""

    @property
    def max_attempts(self) -> int: ...
    @property
    def retry_after(self) -> timedelta: ...
    @property
    def outage_wait_max(self) -> timedelta: ...


@dataclass(frozen=True)
class Retry:
    """Queue the message again, due ``at``; ``attempts`` is its new count. ``outage``:
    nothing the message did (the caller counts one more outage in a row)."""

    at: datetime
    attempts: int
    outage: bool


@dataclass(frozen=True)
class GiveUp:
    """The message has failed for good: ``attempts`` is its final count, ``reason`` what
    `status` shows."""

    attempts: int
    reason: str


def caused_by_message(error: DeliveryError) -> bool:
    """Whether the receiver answered and refused this very message (an attempt spent)."""
    return error.reply is not None and not isinstance(error, (RateLimited, TransportDown))


def decide(
    error: DeliveryError,
    attempts: int,
    settings: RetrySettings,
    now: datetime,
    outages: int = 0,
) -> Retry | GiveUp:
    """What to do after ``error``. ``attempts``: the failures the message caused so far;
    ``outages``: the outages in a row already waited out on its transport or channel."""
    if isinstance(error, PermanentSendError):
        return GiveUp(attempts + 1, str(error))
    if isinstance(error, RateLimited):
        return Retry(now + timedelta(seconds=error.retry_after), attempts, outage=False)
    if not caused_by_message(error):
        wait = min(backoff(settings.retry_after, outages + 1), settings.outage_wait_max)
        return Retry(now + wait, attempts, outage=True)
    attempts += 1
    if attempts >= settings.max_attempts:
        return GiveUp(attempts, f"gave up: {error}")
    return Retry(now + backoff(settings.retry_after, attempts), attempts, outage=False)
