"""A story's picture is the one its feed or page declares, never an <img> of its text."""

from __future__ import annotations

import json
from pathlib import Path

from newsbroadcast.config.model import FeedSource
from newsbroadcast.sources.base import ArticleDraft
from newsbroadcast.sources.feed import fetch_feed
from newsbroadcast.sources.pagemeta import page_metadata, parse_html
from tests.site import rss

MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'
SUMMARY = "<description><![CDATA[<p>Officers <img src=x onerror=alert(1)> graduated.</p>]]>"


def only_story(tmp_path: Path, document: str, name: str = "feed.xml") -> ArticleDraft:
    (tmp_path / name).write_text(document, encoding="utf-8")
    source = FeedSource.model_validate({"type": "feed", "name": "newsroom", "url": name})
    (draft,) = fetch_feed(source, tmp_path, None, None).drafts
    return draft


def item(inner: str) -> str:
    body = f"<item><title>T</title><link>https://newsroom.example.org/t</link>{inner}</item>"
    return rss(body).replace('<rss version="2.0">', f'<rss version="2.0" {MEDIA}>')


DECLARED = [
    ('<media:content url="https://cdn.example.org/full.jpg" medium="image"/>', "full.jpg"),
    ('<media:thumbnail url="https://cdn.example.org/thumb.jpg"/>', "thumb.jpg"),
    ('<enclosure url="https://cdn.example.org/enc.jpg" type="image/jpeg" length="1"/>', "enc.jpg"),
]


def test_an_img_in_the_summary_is_not_the_storys_picture(tmp_path: Path) -> None:
    story = only_story(tmp_path, item(SUMMARY + "</description>"))
    assert story.image is None
    body = "<content:encoded><![CDATA[<p><img src='/pics/a.jpg'></p>]]></content:encoded>"
    encoded = item(SUMMARY + "</description>" + body).replace(
        "<rss ", '<rss xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    )
    assert only_story(tmp_path, encoded).image is None
    # What the feed declares is the picture, beside the same <img>.
    for declared, expected in DECLARED:
        story = only_story(tmp_path, item(SUMMARY + "</description>" + declared))
        assert story.image == f"https://cdn.example.org/{expected}"


def test_a_full_size_picture_wins_over_a_thumbnail(tmp_path: Path) -> None:
    declared = (
        '<media:thumbnail url="https://cdn.example.org/thumb.jpg" width="150" height="84"/>'
        '<media:content url="https://cdn.example.org/full.jpg" medium="image"/>'
    )
    assert only_story(tmp_path, item(declared)).image == "https://cdn.example.org/full.jpg"


def test_a_json_feed_item_keeps_its_declared_image_only(tmp_path: Path) -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "t",
        "home_page_url": "https://newsroom.example.org/",
        "items": [
            {
                "id": "1",
                "url": "https://newsroom.example.org/1",
                "title": "One",
                "content_html": "<p><img src='https://newsroom.example.org/pixel.gif'></p>",
            }
        ],
    }
    assert only_story(tmp_path, json.dumps(feed), "feed.json").image is None
    feed["items"][0]["image"] = "https://cdn.example.org/declared.jpg"  # type: ignore[index]
    story = only_story(tmp_path, json.dumps(feed), "feed.json")
    assert story.image == "https://cdn.example.org/declared.jpg"


def test_a_page_with_junk_json_ld_image_still_gives_its_og_image() -> None:
    page = parse_html(
        b'<html><head><script type="application/ld+json">'
        b'{"@type": "NewsArticle", "image": "javascript:alert(1)"}</script>'
        b'<meta property="og:image" content="/img/story.jpg"></head></html>'
    )
    meta = page_metadata(page, "https://newsroom.example.org/news/story")
    assert meta.image == "https://newsroom.example.org/img/story.jpg"
