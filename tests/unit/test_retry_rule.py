"""The one retry rule (outbox/retry.py): what a failure costs a message and how long it waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsbroadcast.config.model import ChannelBase
from newsbroadcast.errors import (
    DeliveryError,
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
    TransportDown,
)
from newsbroadcast.outbox.retry import GiveUp, Retry, caused_by_message, decide
from tests.site import make_config

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EMAIL = make_config(email={"max_attempts": 3, "retry_after": "1m", "outage_wait_max": "5m"}).email


def test_a_refusal_of_the_message_spends_an_attempt_and_backs_off() -> None:
    refused = TransientSendError("452 mailbox busy", reply="452 4.2.2 busy")
    first = decide(refused, 0, EMAIL, NOW)
    second = decide(refused, 1, EMAIL, NOW)
    assert first == Retry(NOW + timedelta(minutes=1), 1, outage=False)
    assert second == Retry(NOW + timedelta(minutes=2), 2, outage=False)


def test_the_last_attempt_gives_up_with_the_reason() -> None:
    refused = TransientSendError("452 mailbox busy", reply="452 4.2.2 busy")
    assert decide(refused, 2, EMAIL, NOW) == GiveUp(3, "gave up: 452 mailbox busy")


def test_a_permanent_refusal_gives_up_at_once() -> None:
    refused = PermanentSendError("550 no such user", reply="550 5.1.1 unknown")
    assert decide(refused, 0, EMAIL, NOW) == GiveUp(1, "550 no such user")


@pytest.mark.parametrize(
    "error",
    [
        TransportDown("connection refused"),
        TransportDown("421 closing", reply="421 4.3.2 shutting down"),
        TransportConfigError("535 bad password", reply="535 5.7.8 bad credentials"),
        TransientSendError("timed out"),  # no reply at all: nothing the message did
    ],
)
def test_an_outage_spends_no_attempt_and_waits_capped(error: DeliveryError) -> None:
    waits = [decide(error, 2, EMAIL, NOW, outages=n) for n in range(6)]
    assert all(isinstance(w, Retry) and w.attempts == 2 and w.outage for w in waits)
    assert [w.at - NOW for w in waits if isinstance(w, Retry)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 5, 5, 5)
    ]
    assert not caused_by_message(error)


def test_a_long_outage_never_gives_up() -> None:
    assert isinstance(decide(TransportDown("down"), 2, EMAIL, NOW, outages=10_000), Retry)


def test_a_rate_limit_waits_what_it_was_told_and_spends_nothing() -> None:
    limited = RateLimited("429 slow down", retry_after=42, reply="429")
    assert decide(limited, 2, EMAIL, NOW, outages=3) == Retry(
        NOW + timedelta(seconds=42), 2, outage=False
    )


def test_a_channels_own_settings_are_used() -> None:
    channel = ChannelBase.model_validate(
        {"name": "x", "max_attempts": 2, "retry_after": "10s", "outage_wait_max": "15s"}
    )
    refused = TransientSendError("503 try later", reply="503")
    assert decide(refused, 0, channel, NOW) == Retry(NOW + timedelta(seconds=10), 1, False)
    assert decide(refused, 1, channel, NOW) == GiveUp(2, "gave up: 503 try later")
    assert decide(TransportDown("down"), 0, channel, NOW, outages=1) == Retry(
        NOW + timedelta(seconds=15), 0, outage=True
    )
