"""What an article page says about itself, and dates as listings write them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsbroadcast.sources.dates import parse_date
from newsbroadcast.sources.pagemeta import PageMeta, page_metadata, parse_html

BASE = "https://newsroom.example.org/news/story"


def meta(markup: str) -> PageMeta:
    return page_metadata(parse_html(markup.encode()), BASE)


def test_json_ld_wins_and_broken_json_ld_is_passed_over() -> None:
    page = meta(
        """<html><head><title>Site | Story</title>
        <script type="application/ld+json">{ broken </script>
        <script type="application/ld+json">
          [{"@type": ["NewsArticle", "Thing"], "headline": "The headline",
            "image": {"url": "../img/a.jpg"}, "datePublished": "2025-05-23T09:00:00+02:00",
            "author": {"name": "Ada"}}]
        </script>
        <meta property="og:title" content="OG title"></head></html>"""
    )
    assert page.title == "The headline"
    assert page.image == "https://newsroom.example.org/img/a.jpg"
    assert page.published_at == datetime(2025, 5, 23, 7, 0, tzinfo=UTC)
    assert page.author == "Ada"


def test_plain_html_falls_back_to_title_and_description() -> None:
    page = meta(
        """<html><head><title>  Only a
        title </title><meta name="description" content="Plain description"></head></html>"""
    )
    assert (page.title, page.description, page.image) == ("Only a title", "Plain description", None)


def test_javascript_images_are_dropped() -> None:
    assert meta('<meta property="og:image" content="javascript:alert(1)">').image is None


@pytest.mark.parametrize(
    ("text", "formats", "expected"),
    [
        ("23 May 2025", ["%d %B %Y"], datetime(2025, 5, 22, 22, 0, tzinfo=UTC)),
        ("May 21, 2025", ["%d %B %Y", "%B %d, %Y"], datetime(2025, 5, 20, 22, 0, tzinfo=UTC)),
        ("2025-05-23T10:00:00Z", [], datetime(2025, 5, 23, 10, 0, tzinfo=UTC)),
        ("Fri, 23 May 2025 12:00:00 +0000", [], datetime(2025, 5, 23, 12, 0, tzinfo=UTC)),
    ],
)
def test_dates_in_a_local_time_zone(text: str, formats: list[str], expected: datetime) -> None:
    assert parse_date(text, formats, "Africa/Kigali") == expected


def test_a_date_that_fits_no_format_says_so() -> None:
    with pytest.raises(ValueError, match="matches none of the date formats"):
        parse_date("Someday soon", ["%d %B %Y"])
    with pytest.raises(ValueError, match="set date_formats"):
        parse_date("Someday soon")
