"""Parsing real-world feed files through fetch_feed, and the store's pure URL/hash rules."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsbroadcast.articles.store import content_hash
from newsbroadcast.config.model import FeedSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.feed import fetch_feed
from newsbroadcast.sources.urls import canonical_url

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def feed_source(url: str, name: str = "newsroom") -> FeedSource:
    return FeedSource.model_validate({"type": "feed", "name": name, "url": url})


def parse(url: str, base_dir: Path = FIXTURES) -> FetchResult:
    return fetch_feed(feed_source(url), base_dir, None, None)


def by_guid(result: FetchResult) -> dict[str, ArticleDraft]:
    """The first listing of each GUID, as the store keeps it."""
    found: dict[str, ArticleDraft] = {}
    for draft in result.drafts:
        found.setdefault(draft.guid, draft)
    return found


# --- RSS 2.0 ------------------------------------------------------------------------------


def test_rss_entry_maps_every_field() -> None:
    story = by_guid(parse("rss_newsroom.xml"))["wiu-0001"]
    assert story.title == "Rwanda to send all-woman peacekeeping force to South Sudan"
    assert story.url == (
        "https://newsroom.example.org/news/rwanda-all-woman-unit?utm_source=rss&utm_medium=feed"
    )
    assert story.summary == (
        "<p>Rwanda is preparing a police unit made up <em>entirely</em> of women.</p>"
    )
    assert "full story" in story.body
    assert story.image == "https://newsroom.example.org/images/rwanda-unit.jpg"
    assert story.author == "Claire Mukamana"
    assert story.tags == ("rwanda", "peacekeeping")
    # +0200 in the feed: stored as aware UTC.
    assert story.published_at == datetime(2018, 7, 10, 7, 0, tzinfo=UTC)


def test_a_story_listed_twice_is_reported_twice_for_the_store_to_merge() -> None:
    guids = [d.guid for d in parse("rss_newsroom.xml").drafts]
    assert guids.count("wiu-0001") == 2


def test_cr_lf_and_runs_of_spaces_in_a_title_become_one_space() -> None:
    story = by_guid(parse("rss_newsroom.xml"))[
        "https://newsroom.example.org/news/kyrgyz-winter-training"
    ]
    assert story.title == "Kyrgyz border guards train women officers for winter posts"


def test_a_story_without_a_date_has_no_published_at() -> None:
    assert by_guid(parse("rss_newsroom.xml"))["wiu-0004"].published_at is None


def test_hostile_html_is_kept_raw_for_the_sanitiser_and_entities_are_decoded() -> None:
    story = by_guid(parse("rss_newsroom.xml"))["wiu-0005"]
    assert story.title == "Police & border agencies compare notes"
    # Sanitising is render's job (it must see the same markup whatever the source).
    assert "<script>" in story.summary and "onerror" in story.summary


def test_emoji_and_non_latin_scripts_survive() -> None:
    story = by_guid(parse("rss_newsroom.xml"))["wiu-0006"]
    assert story.title == (
        "Abapolisikazi b’u Rwanda 🇷🇼 · Женщины-пограничники · 女性维和人员 👮\u200d♀️"
    )
    assert "她们守护和平" in story.summary and "Женщины служат" in story.summary
    assert story.tags == ("多语言", "пограничники")


def test_relative_links_in_a_file_resolve_against_the_channel_link() -> None:
    result = by_guid(parse("rss_newsroom.xml"))
    story = result["wiu-0007"]
    assert story.url == "https://newsroom.example.org/news/relative-link-story"
    assert story.image == "https://newsroom.example.org/images/car-return.jpg"
    # Links inside the HTML too: an email cannot follow a relative link.
    assert 'href="https://newsroom.example.org/news/background"' in result["wiu-0001"].body


def test_entries_without_title_and_link_are_skipped_and_named() -> None:
    result = parse("rss_newsroom.xml")
    assert result.skipped == ["entry 8: no title and no link"]
    assert len(result.drafts) == 8


def test_guid_falls_back_to_the_link_then_to_a_hash(tmp_path: Path) -> None:
    assert "https://newsroom.example.org/news/tajik-network" in by_guid(parse("rss_newsroom.xml"))
    (tmp_path / "f.xml").write_text(
        "<rss version='2.0'><channel><title>x</title><item><title>Only a title</title>"
        "<pubDate>Mon, 06 Jan 2025 10:00:00 +0000</pubDate></item></channel></rss>"
    )
    first, second = parse("f.xml", tmp_path).drafts[0], parse("f.xml", tmp_path).drafts[0]
    assert first.guid.startswith("sha256:") and first.guid == second.guid
    assert first.url is None


def test_one_guid_on_every_item_falls_back_to_the_links() -> None:
    guids = [d.guid for d in parse("shared_guid.xml").drafts]
    assert guids == [
        "https://newsroom.example.org/news/first",
        "https://newsroom.example.org/news/second",
    ]


def test_unsafe_link_schemes_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "f.xml").write_text(
        "<rss version='2.0'><channel><title>x</title><item><title>Bad link</title>"
        "<link>javascript:alert(1)</link><guid isPermaLink='false'>b1</guid></item>"
        "</channel></rss>"
    )
    assert parse("f.xml", tmp_path).drafts[0].url is None


def test_the_bundled_example_feed() -> None:
    result = parse("feed.xml", EXAMPLES)
    titles = [d.title for d in result.drafts]
    assert 6 <= len(titles) <= 8 and not result.skipped
    assert "Rwanda to send all-woman peacekeeping force to South Sudan" in titles
    assert all(d.url and d.url.startswith("https://newsroom.example.org/") for d in result.drafts)
    assert all(d.tags and d.author and d.published_at for d in result.drafts)


# --- other formats and encodings ----------------------------------------------------------


def test_atom() -> None:
    first, second = parse("atom.xml").drafts
    # type="html" title: markup removed, entities decoded once.
    assert first.title == "Peacekeepers & police: notes from Juba"
    assert first.url == "https://newsroom.example.org/blog/posts/notes-from-juba"  # xml:base
    assert first.author == "Ann Uwase, Bota Alieva"
    assert first.image == "https://newsroom.example.org/blog/img/juba.jpg"
    assert first.published_at == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)  # updated only
    assert second.author == "Desk Editor"  # inherited from the feed
    assert second.published_at == datetime(2024, 4, 1, 8, 0, tzinfo=UTC)  # published wins
    assert second.body == "<p>Plain &lt;text&gt; content.</p>"  # type="text" is not HTML


def test_rss_1_0_rdf() -> None:
    (story,) = parse("rdf.xml").drafts
    assert story.title == "An RSS 1.0 story"
    assert story.author == "Dana Omarova" and story.tags == ("policing",)
    assert story.published_at == datetime(2020, 2, 3, 4, 5, 6, tzinfo=UTC)


def test_json_feed_1_1_detected_by_its_version_key() -> None:
    result = parse("jsonfeed.json")
    first, untitled, partner = result.drafts
    assert first.guid == "json-1"
    assert first.summary == "<p>Officials met &lt;in Almaty&gt; &amp; compared notes.</p>"
    assert first.body == "<p>Police and border officials met.</p>"
    assert first.image == "https://newsroom.example.org/images/osce.jpg"
    assert first.author == "Aigerim Sadykova"
    assert first.tags == ("central-asia", "border-management")
    assert first.published_at == datetime(2025, 5, 23, 10, 30, tzinfo=UTC)
    assert untitled.guid == "42"
    assert untitled.url == "https://newsroom.example.org/news/untitled-note"
    assert untitled.title.startswith("A short note without a title")
    assert untitled.author == "Newsroom Desk"
    assert partner.url == "https://partner.example.net/story"
    assert partner.image == "https://cdn.example.net/a.png"
    assert partner.published_at == datetime(2025, 5, 23, 10, 0, tzinfo=UTC)
    assert result.skipped == ["entry 3: no title and no link", "entry 4: not a JSON object"]


def test_json_feed_1_0() -> None:
    (story,) = parse("jsonfeed_v1.json").drafts
    assert story.author == "Feed Author"
    assert story.published_at == datetime(2019, 6, 1, tzinfo=UTC)


def test_json_that_is_not_a_json_feed_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{"hello": "world"}')
    with pytest.raises(SourceError, match="not a JSON Feed"):
        parse("data.json", tmp_path)


def test_a_feed_in_windows_1251() -> None:
    (story,) = parse("cp1251.xml").drafts
    assert story.title == "Женщины-пограничники Кыргызстана прошли зимнюю подготовку"
    assert story.summary == "Две недели в горах на высоте более 3000 метров."


def test_a_not_well_formed_feed_with_entries_is_still_read() -> None:
    (story,) = parse("bozo_entities.xml").drafts
    assert story.title == "Café talk — border officers meet"


def test_a_gzipped_file_or_response_without_content_encoding(tmp_path: Path) -> None:
    (tmp_path / "feed.xml.gz").write_bytes(gzip.compress((FIXTURES / "rdf.xml").read_bytes()))
    assert parse("feed.xml.gz", tmp_path).drafts[0].title == "An RSS 1.0 story"


def test_a_valid_feed_without_entries_is_not_an_error() -> None:
    assert parse("empty_channel.xml").drafts == []


# --- errors -------------------------------------------------------------------------------


def test_a_broken_feed_without_entries_is_an_error_naming_the_file() -> None:
    with pytest.raises(SourceError) as info:
        parse("malformed.xml")
    assert info.value.source == "newsroom"
    assert str(FIXTURES / "malformed.xml") in str(info.value)
    assert "broken" in str(info.value)


def test_an_html_page_is_an_error() -> None:
    with pytest.raises(SourceError, match="HTML page, not a feed"):
        parse("not_a_feed.html")


def test_a_missing_file_is_an_error_with_its_full_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=str(tmp_path / "nope.xml")):
        parse("nope.xml", tmp_path)


def test_empty_and_plain_text_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.xml").write_bytes(b"")
    (tmp_path / "text.txt").write_text("just some words")
    with pytest.raises(SourceError, match="empty file"):
        parse("empty.xml", tmp_path)
    with pytest.raises(SourceError, match="not an RSS, Atom or JSON feed"):
        parse("text.txt", tmp_path)


def test_file_urls_and_absolute_paths() -> None:
    path = FIXTURES / "rdf.xml"
    assert parse(path.as_uri(), Path("/nonexistent")).drafts[0].title == "An RSS 1.0 story"
    assert parse(str(path), Path("/nonexistent")).drafts[0].title == "An RSS 1.0 story"


def test_unsupported_scheme() -> None:
    with pytest.raises(SourceError, match="unsupported URL scheme 'ftp'"):
        parse("ftp://example.org/feed.xml")


# --- canonical URL and content hash -------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "HTTPS://NewsRoom.Example.ORG:443/News/Story#comments",
            "https://newsroom.example.org/News/Story",
        ),
        ("http://newsroom.example.org:80/a/", "https://newsroom.example.org/a"),
        ("https://newsroom.example.org", "https://newsroom.example.org/"),
        (
            "https://newsroom.example.org/?b=2&utm_source=rss&a=1&fbclid=x&gclid=y&mc_cid=1"
            "&mc_eid=2&UTM_Medium=z",
            "https://newsroom.example.org/?a=1&b=2",
        ),
        ("https://newsroom.example.org/a?ref=main", "https://newsroom.example.org/a?ref=main"),
        ("https://newsroom.example.org:8443/a", "https://newsroom.example.org:8443/a"),
        ("https://user:pw@newsroom.example.org./a", "https://newsroom.example.org/a"),
        (
            "https://newsroom.example.org/%7euser/caf%c3%a9",
            "https://newsroom.example.org/~user/caf%C3%A9",
        ),
        ("https://newsroom.example.org/café", "https://newsroom.example.org/caf%C3%A9"),
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("https://newsroom.example.org/#!/story/1", "https://newsroom.example.org/#!/story/1"),
        ("https://[2001:DB8::1]:443/a", "https://[2001:db8::1]/a"),
        ("  https://newsroom.example.org/a  ", "https://newsroom.example.org/a"),
        ("/relative/path", None),
        ("mailto:desk@newsroom.example.org", None),
        ("javascript:alert(1)", None),
        ("https://newsroom.example.org:99999/a", None),
        ("", None),
        (None, None),
    ],
)
def test_canonical_url(url: str | None, expected: str | None) -> None:
    assert canonical_url(url) == expected


def test_content_hash_follows_what_readers_see() -> None:
    base = ArticleDraft(
        guid="g",
        title="Title",
        url="https://newsroom.example.org/a?utm_source=x",
        summary="<p>s</p>",
        tags=("b", "a"),
    )
    same = [
        ArticleDraft(
            guid="other",
            title="Title",
            url="https://newsroom.example.org/a?utm_source=y",
            summary="<p>s</p>",
            tags=("a", "b"),
            author="Someone",
            published_at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
    ]
    different = [
        ArticleDraft(guid="g", title="Title!", url=base.url, summary="<p>s</p>", tags=("a", "b")),
        ArticleDraft(guid="g", title="Title", url=base.url, summary="<p>S</p>", tags=("a", "b")),
        ArticleDraft(
            guid="g", title="Title", url=base.url, summary="<p>s</p>", body="b", tags=("a", "b")
        ),
        ArticleDraft(
            guid="g", title="Title", url=base.url, summary="<p>s</p>", image="i", tags=("a", "b")
        ),
        ArticleDraft(guid="g", title="Title", url=base.url, summary="<p>s</p>", tags=("a",)),
        ArticleDraft(
            guid="g",
            title="Title",
            url="https://newsroom.example.org/b",
            summary="<p>s</p>",
            tags=("a", "b"),
        ),
    ]
    digest = content_hash(base)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert all(content_hash(d) == digest for d in same)
    assert len({content_hash(d) for d in different} | {digest}) == len(different) + 1
