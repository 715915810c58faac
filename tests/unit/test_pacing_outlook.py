"""When a paced channel posts next: the pure rule `status` shows (outbox/pacing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from newsbroadcast.config.model import Pace
from newsbroadcast.outbox.pacing import (
    ChannelOutlook,
    describe,
    in_window,
    next_post_time,
    window_opens,
)

KIGALI_DAY = Pace(every=timedelta(minutes=30), between="07:00-21:00", timezone="Africa/Kigali")
NIGHT = Pace(every=timedelta(hours=1), between="22:00-06:00", timezone="UTC")
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 14:00 in Kigali (UTC+2)


def test_an_unpaced_channel_posts_when_its_first_post_is_due() -> None:
    assert next_post_time(None, None, NOON - timedelta(hours=1), NOON) == NOON
    later = NOON + timedelta(minutes=7)  # a retry's backoff
    assert next_post_time(None, None, later, NOON) == later


def test_the_paces_slot_holds_back_a_post_that_is_due() -> None:
    slot = NOON + timedelta(minutes=25)
    assert next_post_time(KIGALI_DAY, slot, NOON - timedelta(hours=1), NOON) == slot
    assert next_post_time(KIGALI_DAY, NOON - timedelta(minutes=1), NOON, NOON) == NOON


def test_outside_its_hours_the_next_post_waits_for_the_window_to_open() -> None:
    evening = datetime(2026, 11, 30, 19, 5, tzinfo=UTC)  # 21:05 in Kigali: closed
    morning = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # 07:00 in Kigali
    assert next_post_time(KIGALI_DAY, None, evening, evening) == morning
    early = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # 05:00 in Kigali, the same morning
    assert window_opens(KIGALI_DAY, early) == morning
    # A slot that ends in the night moves to the morning too.
    assert next_post_time(KIGALI_DAY, evening, NOON, NOON) == morning
    assert in_window(KIGALI_DAY, morning)


def test_a_window_across_midnight_opens_the_same_evening() -> None:
    assert window_opens(NIGHT, NOON) == datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    two_am = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert window_opens(NIGHT, two_am) == two_am


def test_the_window_opens_at_local_time_across_a_daylight_saving_change() -> None:
    paris = Pace(between="07:00-21:00", timezone="Europe/Paris")
    saturday_night = datetime(2026, 3, 28, 21, 0, tzinfo=UTC)  # 22:00 CET
    # Clocks go forward that night: 07:00 on Sunday is CEST, 05:00 UTC, not 06:00.
    assert window_opens(paris, saturday_night) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_the_pace_reads_as_a_person_says_it() -> None:
    assert describe(KIGALI_DAY) == "1 per 30 min, 07:00-21:00 Africa/Kigali"
    assert describe(Pace(every=timedelta(hours=1, minutes=30))) == "1 per 1 h 30 min"
    assert describe(Pace(between="07:00-21:00")) == "no minimum interval, 07:00-21:00 UTC"


def test_the_status_line_says_now_a_time_or_nothing_queued() -> None:
    due = ChannelOutlook("bsky", 2, 0, NOON + timedelta(minutes=5), KIGALI_DAY)
    assert due.line(NOON) == (
        "bsky: 2 queued, next post at 2026-11-30 12:05 UTC "
        "(pacing 1 per 30 min, 07:00-21:00 Africa/Kigali)"
    )
    assert (
        ChannelOutlook("x", 3, 1, NOON, None).line(NOON) == "x: 3 queued, 1 sending, next post now"
    )
    assert ChannelOutlook("x", 0, 0, None, None).line(NOON) == "x: nothing queued"
