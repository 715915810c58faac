"""Links, hashtags, grapheme counts, byte offsets and record keys: the pure parts of the
bluesky, telegram and webhook channels."""

from __future__ import annotations

import hashlib
import hmac

import regex

from newsbroadcast.channels import richtext
from newsbroadcast.channels.base import OutgoingPost, story_identity
from newsbroadcast.channels.bluesky import facets, measure, record_key
from newsbroadcast.channels.telegram import measure as telegram_measure
from newsbroadcast.channels.telegram import to_html
from newsbroadcast.channels.webhook import idempotency_key, sign
from newsbroadcast.render.links import short_url

TID = regex.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
S32 = "234567abcdefghijklmnopqrstuvwxyz"


def test_graphemes_count_what_a_reader_sees() -> None:
    assert richtext.graphemes("abc") == 3
    assert richtext.graphemes("e\u0301") == 1  # e + combining acute
    assert richtext.graphemes("🇷🇼") == 1  # a flag: two regional indicators
    assert richtext.graphemes("👩🏽‍✈️") == 1  # ZWJ sequence with a skin tone
    assert richtext.graphemes("👨‍👩‍👧‍👦 ok") == 4
    assert richtext.graphemes("中文") == 2
    assert richtext.graphemes("a\r\nb") == 3  # CR LF is one cluster


def test_bluesky_measure_is_the_tighter_of_300_graphemes_and_3000_bytes() -> None:
    assert measure("é" * 300) == 300
    family = "👨‍👩‍👧‍👦"  # 25 bytes, one grapheme
    assert measure(family * 120) == 300  # 3,000 bytes
    assert measure(family * 121) > 300


def test_links_stop_before_sentence_punctuation() -> None:
    text = "Read https://x.org/a. Also (https://x.org/b) and https://x.org/wiki/A_(b)!"
    assert [s.value for s in richtext.links(text)] == [
        "https://x.org/a",
        "https://x.org/b",
        "https://x.org/wiki/A_(b)",
    ]


def test_hashtags_skip_numbers_fragments_and_trailing_punctuation() -> None:
    text = "#Women in #1 place, see https://x.org/#anchor #BorderGuards. #Kigali2026"
    assert [s.value for s in richtext.hashtags(text)] == ["Women", "BorderGuards", "Kigali2026"]


def test_facet_offsets_are_utf8_bytes_start_inclusive_end_exclusive() -> None:
    text = "Café 🇷🇼 — https://x.org/é #Ürümqi"
    data = text.encode()
    found = facets(text)
    covered = [data[f.index.byte_start : f.index.byte_end].decode() for f in found]
    assert covered == ["https://x.org/é", "#Ürümqi"]
    assert found[0].index.byte_start == len("Café 🇷🇼 — ".encode())
    assert found[0].features[0].uri == "https://x.org/é"
    assert found[1].features[0].tag == "Ürümqi"


def _post(guid: str, channel: str = "bsky", article_id: int = 42) -> OutgoingPost:
    story = story_identity("news.example.org", "feed", guid)
    return OutgoingPost(article_id, article_id, channel, "t", None, "t", story=story)


def test_record_keys_are_valid_tids_fixed_per_story_and_channel() -> None:
    key = record_key(_post("a"))
    assert TID.match(key)
    assert key == record_key(_post("a", article_id=7))  # the row id plays no part
    value = 0
    for c in key:
        value = value * 32 + S32.index(c)
    assert value < 2**63  # the first bit is 0
    others = {record_key(_post(f"story-{n}")) for n in range(1, 5001)}
    assert len(others) == 5000
    assert record_key(_post("a", channel="other")) != key


def test_telegram_html_escapes_text_and_anchors_links() -> None:
    html = to_html('a<b & c> "https://x.org/?a=1&b=2" end')
    assert html == (
        'a&lt;b &amp; c&gt; "<a href="https://x.org/?a=1&amp;b=2">'
        'https://x.org/?a=1&amp;b=2</a>" end'
    )
    assert telegram_measure("😀a") == 3  # UTF-16 units, as Telegram counts


def test_webhook_signature_and_key() -> None:
    digest = hmac.new(b"s", b'{"a":1}', hashlib.sha256).hexdigest()
    assert sign("s", b'{"a":1}') == f"sha256={digest}"
    assert idempotency_key(_post("a", "hook", 1)) == idempotency_key(_post("a", "hook", 2))
    assert idempotency_key(_post("a", "hook")) != idempotency_key(_post("b", "hook"))


LONG = "https://newsroom.example.org/2018/07/rwanda-all-woman-peacekeeping-force?utm_source=x"


def test_links_are_shown_as_the_bluesky_app_shortens_them() -> None:
    assert short_url(LONG) == "newsroom.example.org/2018/07/rwan…"
    assert short_url("https://x.org/") == "x.org"
    assert short_url("https://x.org/short-path?a=1") == "x.org/short-path?a=1"  # 15: whole
    assert short_url("http://x.org/exactly-17-chars") == "x.org/exactly-17-c…"


def test_a_shortened_link_keeps_its_whole_url_in_the_facet() -> None:
    text = f"Ingabo z'u Rwanda 🇷🇼 {LONG} #Rwanda"
    shown, spans = richtext.with_short_links(text)
    assert shown == "Ingabo z'u Rwanda 🇷🇼 newsroom.example.org/2018/07/rwan… #Rwanda"
    found = facets(shown, spans)
    data = shown.encode()
    covered = [data[f.index.byte_start : f.index.byte_end].decode() for f in found]
    assert covered == ["newsroom.example.org/2018/07/rwan…", "#Rwanda"]
    assert found[0].features[0].uri == LONG  # the reader lands on the whole address
    assert found[0].index.byte_start == len("Ingabo z'u Rwanda 🇷🇼 ".encode())


def test_bluesky_counts_a_long_link_as_shown() -> None:
    text = "x" * 250 + " " + LONG  # 336 characters written out, 285 shown
    assert measure(text) == 250 + 1 + len("newsroom.example.org/2018/07/rwan…")
    assert measure(text) <= 300
