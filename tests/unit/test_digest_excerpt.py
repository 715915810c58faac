"""Shortening what readers see: never inside a grapheme cluster, at a sentence's or word's
end where there is one, and HTML excerpts that are always whole markup."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import regex

from newsbroadcast.render.excerpt import ELLIPSIS, excerpt_html, html_paragraphs, shorten
from newsbroadcast.render.templates import html_to_text, sanitize_html

FLAG = "🇷🇼"  # two code points, one grapheme
OFFICER = "👮🏾‍♀️"  # five code points, one grapheme
LONG = (
    "Police and border officials from five Central Asian states met to compare how their "
    "services recruit, train and keep women officers. Participants agreed to share training "
    "modules and to meet again next year to review what actually changed on the ground."
)


def clusters(text: str) -> list[str]:
    return regex.findall(r"\X", text)


# --- shorten --------------------------------------------------------------------------------


def test_text_that_fits_is_left_alone() -> None:
    assert shorten("Short title", 11) == "Short title"
    assert shorten(LONG, 0) == LONG  # 0: no limit


def test_a_cut_falls_at_a_word_end_and_the_ellipsis_counts() -> None:
    cut = shorten(LONG, 40)
    assert cut == "Police and border officials from five…"
    assert len(cut) <= 40


def test_a_cut_prefers_a_sentence_end_near_the_limit() -> None:
    cut = shorten(LONG, 140, sentences=True)
    assert cut == (
        "Police and border officials from five Central Asian states met to compare how their "
        "services recruit, train and keep women officers."
    )
    # Too far back from the limit: a word's end reads better than one short sentence.
    assert shorten("Yes. " + LONG, 120, sentences=True).endswith(ELLIPSIS)


@pytest.mark.parametrize("emoji", [FLAG, OFFICER])
def test_a_cut_never_splits_a_grapheme_cluster(emoji: str) -> None:
    text = emoji * 300
    for limit in range(2, 12):
        cut = shorten(text, limit)
        assert cut.endswith(ELLIPSIS)
        kept = cut.removesuffix(ELLIPSIS)
        assert clusters(kept) == [emoji] * (limit - 1)
    # Counted in code points (a header), the cut still falls between clusters.
    for limit in range(3, 30):
        kept = shorten(text, limit, code_points=True).removesuffix(ELLIPSIS)
        assert len(kept) + 1 <= limit and set(clusters(kept)) <= {emoji}


def test_text_without_spaces_is_cut_between_clusters() -> None:
    text = "女警察在边境机构中担任领导职务。她们守护和平与安全"
    assert shorten(text, 10) == "女警察在边境机构中…"
    assert shorten(text, 18, sentences=True) == "女警察在边境机构中担任领导职务。"


# --- excerpt_html ---------------------------------------------------------------------------


def well_formed(fragment: str) -> bool:
    """Every start tag closed in order (br excepted)."""
    stack: list[str] = []
    ok = True

    class Check(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag != "br":
                stack.append(tag)

        def handle_endtag(self, tag: str) -> None:
            nonlocal ok
            ok = ok and bool(stack) and stack.pop() == tag

    Check().feed(fragment)
    return ok and not stack


def test_an_excerpt_is_cut_by_its_visible_text_and_every_tag_is_closed() -> None:
    summary = sanitize_html(
        "<p>Forty officers completed <em>twelve <strong>weeks</strong> of hard training</em> "
        'at the <a href="https://ex.org/academy">national police academy in Musanze</a> '
        "this spring.</p><p>A second paragraph that is left out.</p>"
    )
    for limit in range(5, 120, 7):
        cut = excerpt_html(summary, limit)
        assert well_formed(cut), cut
        text = html_to_text(cut)
        assert len(clusters(text)) <= limit, (limit, text)
        assert html_to_text(summary).startswith(text.removesuffix(ELLIPSIS).rstrip())
    assert excerpt_html(summary, 40) == (
        "<p>Forty officers completed <em>twelve <strong>weeks…</strong></em></p>"
    )
    assert excerpt_html(summary, 60) == (
        "<p>Forty officers completed <em>twelve <strong>weeks</strong> of hard training</em>"
        " at…</p>"
    )


def test_an_excerpt_leaves_out_elements_it_keeps_nothing_of() -> None:
    summary = "<p>First sentence here.</p><p>Second sentence, much longer than the room.</p>"
    assert excerpt_html(summary, 30) == "<p>First sentence here.</p>"


def test_loose_text_is_wrapped_in_paragraphs_so_every_excerpt_ends_alike() -> None:
    assert excerpt_html("Plain <em>text</em> summary", 0) == "<p>Plain <em>text</em> summary</p>"
    assert excerpt_html("one<br>two<ul><li>a</li></ul>three", 0) == (
        "<p>one<br>two</p><ul><li>a</li></ul><p>three</p>"
    )


def test_text_is_escaped_again_after_the_cut() -> None:
    cut = excerpt_html(sanitize_html("<p>Police &amp; army &lt;3 &quot;women&quot;</p>"), 0)
    assert cut == "<p>Police &amp; army &lt;3 &quot;women&quot;</p>"


def test_a_5000_character_summary_becomes_an_excerpt_of_about_the_limit() -> None:
    summary = "<p>" + "Officers trained. " * 300 + "</p>"
    cut = excerpt_html(summary, 300)
    assert 250 <= len(html_to_text(cut)) <= 300
    assert cut.endswith("Officers trained.</p>")  # at a sentence's end


# --- html_paragraphs ------------------------------------------------------------------------


def test_paragraphs_come_from_blocks_with_line_breaks_kept() -> None:
    assert html_paragraphs("<p>One <em>a</em></p>\n<p>Two<br>lines</p><ul><li>x</li></ul>") == [
        "One a",
        "Two\nlines",
        "- x",
    ]
    assert html_paragraphs("loose text") == ["loose text"]
    assert html_paragraphs("<p> </p>") == []
