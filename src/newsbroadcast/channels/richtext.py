"""Where the links and hashtags are in a post's plain text, for networks that mark them up.

Post text is stored as plain text (rendered once, at planning). Bluesky wants facets with
UTF-8 byte ranges, Telegram and Slack want markup around links: each is derived from the
same character spans found here, so every network agrees on what a link is.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

# Greedy up to whitespace or a character no URL in our templates contains; trailing
# sentence punctuation is trimmed afterwards ("Read https://x.org/a." links to /a).
_URL = regex.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?'\"…"
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


def _trim_url(url: str) -> str:
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last == ")" and url.count("(") < url.count(")"):
            url = url[:-1]  # "(see https://x.org/a)" — the parenthesis is the sentence's
        else:
            break
    return url


def links(text: str) -> list[Span]:
    """Every http(s) URL in ``text``, in order."""
    found = []
    for m in _URL.finditer(text):
        url = _trim_url(m.group(0))
        if len(url) > len("https://"):
            found.append(Span(m.start(), m.start() + len(url), url))
    return found


def hashtags(text: str) -> list[Span]:
    """Every hashtag in ``text`` outside links: ``#`` starting a word, trailing
    punctuation excluded, not only digits (``#1`` is a number), at most 64 graphemes."""
    inside_links = [(s.start, s.end) for s in links(text)]
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
