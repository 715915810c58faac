"""Length conformance: X's weighted count (twitter-text v3) and Mastodon's URL-as-23 count,
and the pace window. These are the cases the chosen library must pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsbroadcast.channels.mastodon import countable_length
from newsbroadcast.channels.x import LIMIT, weighted_length
from newsbroadcast.config.model import Pace
from newsbroadcast.outbox.pacing import in_window
from newsbroadcast.render.social import fit


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("Hi http://test.co", 26),  # the example: 3 + a URL as 23
        ("a" * 280, 280),
        ("https://newsroom.example.org/2026/11/a-very-long-slug-about-border-guards?ref=x", 23),
        ("read newsroom.example.org/kg now", 5 + 23 + 4),  # a URL without protocol counts too
        ("😀", 2),  # emoji weigh 2 …
        ("👩‍✈️", 2),  # … a ZWJ sequence is one emoji …
        ("🇷🇼", 2),  # … and so is a flag
        ("日本語のニュース", 16),  # CJK weigh 2
        ("한국어", 6),
        ("café résumé naïve", 17),  # Latin-1 accented letters weigh 1
        ("cafe\u0301", 4),  # NFC first: e + combining acute is one é
        ("Ωμέγα — “quoted” ‘text’", 23),  # Greek, dashes and curly quotes weigh 1
        ("…", 2),  # but the ellipsis (U+2026) is outside v3's light ranges
        ("line one\nline two", 17),  # a newline weighs 1
        ("line one\r\nline two", 17),  # CRLF counts as one line ending
    ],
)
def test_x_weighted_length(text: str, weight: int) -> None:
    assert weighted_length(text) == weight


def test_x_limit_boundaries() -> None:
    assert weighted_length("a" * 280) <= LIMIT
    assert weighted_length("a" * 285) > LIMIT  # 285 plain characters are invalid
    assert weighted_length("😀" * 140) == LIMIT
    assert weighted_length("😀" * 141) > LIMIT
    assert weighted_length("日" * 141) > LIMIT


def test_fitting_to_x_keeps_the_url_and_shortens_the_summary() -> None:
    url = "https://newsroom.example.org/" + "x" * 80
    summary = "女性の国境警備隊員 " * 40  # CJK: each character weighs 2

    def render(s: str) -> str:
        return f"Border guards graduate\n\n{s}\n\n{url}"

    text = fit(render, summary, LIMIT, weighted_length)
    assert weighted_length(text) <= LIMIT
    assert text.endswith(url) and "…" in text
    assert len(text) < LIMIT  # measured by weight, not characters


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("Hi http://test.co", 3 + 23),
        ("see https://newsroom.example.org/" + "a" * 100 + " now", 4 + 23 + 4),
        ("two https://a.example.org/x and https://b.example.org/y", 4 + 23 + 5 + 23),
        ("newsroom.example.org stays text", 31),  # Mastodon links only http(s) URLs
        ("😀 日本", 4),  # characters, not weights
    ],
)
def test_mastodon_countable_length(text: str, length: int) -> None:
    assert countable_length(text) == length


def test_pace_window_in_the_channels_time_zone() -> None:
    pace = Pace(every=timedelta(minutes=10), between="07:00-21:00", timezone="Africa/Kigali")
    kigali_0659 = datetime(2026, 11, 29, 4, 59, tzinfo=UTC)  # UTC+2
    assert not in_window(pace, kigali_0659)
    assert in_window(pace, kigali_0659 + timedelta(minutes=1))
    assert in_window(pace, datetime(2026, 11, 29, 18, 59, tzinfo=UTC))
    assert not in_window(pace, datetime(2026, 11, 29, 19, 0, tzinfo=UTC))
    overnight = Pace(between="22:00-06:00")
    assert in_window(overnight, datetime(2026, 11, 29, 23, 0, tzinfo=UTC))
    assert in_window(overnight, datetime(2026, 11, 29, 5, 0, tzinfo=UTC))
    assert not in_window(overnight, datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    assert in_window(Pace(every=timedelta(minutes=5)), kigali_0659)


def test_a_pace_window_must_name_real_times() -> None:
    with pytest.raises(ValueError, match="not a time of day"):
        Pace(between="07:00-25:00")
