"""Where the links and hashtags are in a post's plain text, for networks that mark them up.

Post text is stored as plain text (rendered once, at planning). Bluesky wants facets with
UTF-8 byte ranges, Telegram and Slack want markup around links: each is derived from the
same character spans found here, so every network agrees on what a link is.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from newsbroadcast.render.links import short_url, url_spans

# A hashtag starts a word: at the start of the text or after whitespace.
_HASHTAG = regex.compile(r"(?<!\S)[#＃]([^\s#＃]+)")
_GRAPHEME = regex.compile(r"\X")
MAX_TAG_GRAPHEMES = 64  # Bluesky refuses longer tags


@dataclass(frozen=True)
class Span:
    """Characters ``start:end`` of the text; ``value`` is the link target or the tag
    (without its ``#``)."""

    start: int
    end: int
    value: str


def graphemes(text: str) -> int:
    """User-perceived characters (extended grapheme clusters): a flag, a family emoji or
    an e with a combining accent each count 1."""
    return len(_GRAPHEME.findall(text))


def links(text: str) -> list[Span]:
    """Every http(s) URL in ``text``, in order (render/links.py decides what a URL is, so
    fitting and markup agree)."""
    return [Span(start, end, url) for start, end, url in url_spans(text)]


def with_short_links(text: str) -> tuple[str, list[Span]]:
    """``text`` with every URL shown shortened as the Bluesky app shows links
    (``short_url``), and where each shown link now is, its ``value`` the whole URL: the
    reader sees a short link and the facet takes them to the full address."""
    shown: list[str] = []
    spans: list[Span] = []
    at = 0
    for span in links(text):
        shown.append(text[at : span.start])
        start = sum(len(part) for part in shown)
        short = short_url(span.value)
        shown.append(short)
        spans.append(Span(start, start + len(short), span.value))
        at = span.end
    shown.append(text[at:])
    return "".join(shown), spans


def hashtags(text: str, link_spans: list[Span] | None = None) -> list[Span]:
    """Every hashtag in ``text`` outside links (``link_spans``, by default the URLs found
    in ``text``): ``#`` starting a word, trailing punctuation excluded, not only digits
    (``#1`` is a number), at most 64 graphemes."""
    found_links = links(text) if link_spans is None else link_spans
    inside_links = [(s.start, s.end) for s in found_links]
    found = []
    for m in _HASHTAG.finditer(text):
        tag = regex.sub(r"\p{P}+$", "", m.group(1))
        start = m.start()
        if not tag or tag.isdigit() or graphemes(tag) > MAX_TAG_GRAPHEMES:
            continue
        if any(a <= start < b for a, b in inside_links):
            continue
        found.append(Span(start, m.start(1) + len(tag), tag))
    return found


def utf8_offset(text: str, index: int) -> int:
    """The UTF-8 byte offset of character ``index`` of ``text``."""
    return len(text[:index].encode("utf-8"))
