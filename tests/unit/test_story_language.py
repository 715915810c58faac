"""A story's language as its source states it: feeds, JSON Feed, article pages, and the
tag it is stored as."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsbroadcast.config.model import FeedSource
from newsbroadcast.sources.feed import fetch_feed
from newsbroadcast.sources.language import language_tag
from newsbroadcast.sources.pagemeta import page_metadata, parse_html


@pytest.mark.parametrize(
    ("given", "tag"),
    [
        ("fr", "fr"),
        ("EN-us", "en-US"),
        ("rw_RW", "rw-RW"),
        ("zh_hant_tw", "zh-Hant-TW"),
        (" fr, en ", "fr"),  # a list: its first
        ("English", None),  # a name, not a tag: no guess
        ("und", None),  # "undetermined"
        ("x-default", None),
        ("", None),
        (None, None),
    ],
)
def test_language_tags_are_normalised_or_refused(given: str | None, tag: str | None) -> None:
    assert language_tag(given) == tag


def parse(tmp_path: Path, name: str, content: str) -> dict[str, str | None]:
    (tmp_path / name).write_text(content, encoding="utf-8")
    source = FeedSource.model_validate({"type": "feed", "name": "newsroom", "url": name})
    drafts = fetch_feed(source, tmp_path, None, None).drafts
    return {(d.url or "").rsplit("/", 1)[-1]: d.language for d in drafts}


def test_rss_items_take_the_feeds_language_unless_they_name_their_own(tmp_path: Path) -> None:
    found = parse(
        tmp_path,
        "feed.xml",
        """<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title>Amakuru</title><link>https://newsroom.example.org/</link><description>d</description>
<language>rw</language>
<item><title>Abapolisi</title><link>https://newsroom.example.org/a</link></item>
<item><title>Police</title><link>https://newsroom.example.org/b</link>
<dc:language>fr-FR</dc:language></item>
</channel></rss>""",
    )
    assert found == {"a": "rw", "b": "fr-FR"}


def test_atom_entries_take_their_xml_lang(tmp_path: Path) -> None:
    found = parse(
        tmp_path,
        "feed.atom",
        """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">
<title>Newsroom</title><id>urn:feed</id><updated>2026-11-28T00:00:00Z</updated>
<entry><id>urn:a</id><title>Border guards</title><updated>2026-11-28T00:00:00Z</updated>
<link href="https://newsroom.example.org/a"/></entry>
<entry xml:lang="fr"><id>urn:b</id><title>Gardes-frontières</title>
<updated>2026-11-28T00:00:00Z</updated><link href="https://newsroom.example.org/b"/></entry>
</feed>""",
    )
    assert found == {"a": "en", "b": "fr"}


def test_a_json_feed_gives_its_language_to_every_item(tmp_path: Path) -> None:
    found = parse(
        tmp_path,
        "feed.json",
        """{"version": "https://jsonfeed.org/version/1.1", "title": "Amakuru",
            "language": "rw-RW",
            "items": [{"id": "1", "url": "https://newsroom.example.org/1", "title": "A"}]}""",
    )
    assert found == {"1": "rw-RW"}


def test_an_article_page_says_its_language() -> None:
    def language(markup: str) -> str | None:
        return page_metadata(parse_html(markup.encode()), "https://x.org/a").language

    assert language('<html lang="fr-FR"><head><title>t</title></head></html>') == "fr-FR"
    assert (
        language(
            '<html lang="en"><head><script type="application/ld+json">'
            '{"@type": "NewsArticle", "inLanguage": "rw"}</script></head></html>'
        )
        == "rw"
    )  # the article's own word beats the site template's
    assert language('<html><head><meta property="og:locale" content="fr_CA"></head></html>') == (
        "fr-CA"
    )
    assert (
        language('<html><head><meta http-equiv="Content-Language" content="sw"></head></html>')
        == "sw"
    )
    assert language("<html><head><title>t</title></head></html>") is None
