from datetime import UTC, datetime, timedelta

from newsbroadcast.config.model import Digest
from newsbroadcast.planning.schedule import due_period, latest_fire_time, matches_tags, period_key


def digest(**kw: object) -> Digest:
    base = {"name": "daily", "cron": "0 7 * * *", "timezone": "Africa/Kigali", "catch_up": "2h"}
    return Digest.model_validate({**base, **kw})


def test_send_time_is_in_the_digests_own_time_zone() -> None:
    # 07:00 in Kigali (UTC+2) is 05:00 UTC.
    now = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
    assert due_period(digest(), now) == "2026-11-29T05:00Z"


def test_missed_send_time_is_made_up_only_within_catch_up() -> None:
    assert due_period(digest(), datetime(2026, 11, 29, 6, 59, tzinfo=UTC)) == "2026-11-29T05:00Z"
    assert due_period(digest(), datetime(2026, 11, 29, 7, 1, tzinfo=UTC)) is None
    assert due_period(digest(), datetime(2026, 11, 29, 4, 59, tzinfo=UTC)) is None


def test_latest_fire_time_picks_the_most_recent_one() -> None:
    d = digest(cron="*/10 * * * *", timezone="UTC")
    now = datetime(2026, 11, 29, 12, 34, 56, tzinfo=UTC)
    assert latest_fire_time(d.trigger(), now, timedelta(hours=1)) == datetime(
        2026, 11, 29, 12, 30, tzinfo=UTC
    )


def test_weekly_digest_period_is_stable_within_the_window() -> None:
    d = digest(cron="0 8 * * mon", catch_up="6h")
    monday = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 08:00 Kigali
    later = monday + timedelta(hours=5)
    assert due_period(d, monday) == due_period(d, later) == period_key(monday)
    assert due_period(d, monday + timedelta(hours=7)) is None


def test_forced_periods_are_unique_per_moment() -> None:
    now = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
    a = due_period(digest(), now, force=True)
    b = due_period(digest(), now + timedelta(seconds=1), force=True)
    assert a and b and a != b and a.startswith("manual-")


def test_tag_filter_is_case_insensitive_and_empty_means_all() -> None:
    assert matches_tags(["Rwanda", "peacekeeping"], [])
    assert matches_tags(["Rwanda"], ["rwanda", "kenya"])
    assert not matches_tags(["policing"], ["rwanda"])
