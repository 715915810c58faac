"""Dates as web pages and databases write them, turned into aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from dateutil import parser as dateparser

__all__ = ["as_utc", "parse_date"]


def as_utc(moment: datetime | date, zone: str = "UTC") -> datetime:
    """``moment`` in UTC; a naive value (or a bare date) is taken to be in ``zone``."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


def parse_date(
    text: str, formats: Sequence[str] = (), zone: str = "UTC", day_first: bool = False
) -> datetime:
    """Parse ``text`` with the first matching strptime format, or let dateutil guess when
    no format is given. Raises ValueError when nothing fits."""
    text = " ".join(text.split())
    if not text:
        raise ValueError("empty date")
    if formats:
        for fmt in formats:
            try:
                return as_utc(datetime.strptime(text, fmt), zone)
            except ValueError:
                continue
        raise ValueError(f"{text!r} matches none of the date formats {list(formats)}")
    try:
        # ISO 8601 is what databases and most pages write, and far cheaper than guessing.
        return as_utc(datetime.fromisoformat(text), zone)
    except ValueError:
        pass
    try:
        # Parts the text leaves out (the year of "23 May") are taken from today, at midnight.
        return as_utc(dateparser.parse(text, dayfirst=day_first), zone)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"{text!r} is not a date I can read (set date_formats)") from e
