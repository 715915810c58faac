"""Where the web links are in a post's plain text, and how a link reads when shortened.

Pure, and shared: fitting (render/social.py) must never cut inside a link, and the channels
that mark links up (channels/richtext.py) must agree with it on what a link is.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import regex

# Greedy up to whitespace or a character no URL in our templates contains; trailing
# sentence punctuation is trimmed afterwards ("Read https://x.org/a." links to /a).
_URL = regex.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?'\"…。、，！？）」』】"
SHORT_PATH = 13  # the Bluesky app shows this much of a path longer than 15 characters
ELLIPSIS = "…"


def _trim(url: str) -> str:
    while url:
        last = url[-1]
        if last in _TRAILING:
            url = url[:-1]
        elif last == ")" and url.count("(") < url.count(")"):
            url = url[:-1]  # "(see https://x.org/a)" — the parenthesis is the sentence's
        else:
            break
    return url


def url_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, url)`` in characters for every http(s) URL in ``text``, in order."""
    found = []
    for m in _URL.finditer(text):
        url = _trim(m.group(0))
        if len(url) > len("https://"):
            found.append((m.start(), m.start() + len(url), url))
    return found


def short_url(url: str) -> str:
    """``url`` as the Bluesky app shows it: without the scheme, and a path (with its query
    and fragment) longer than 15 characters cut to its first 13 and an ellipsis.
    'https://newsroom.example.org/2018/07/rwanda' → 'newsroom.example.org/2018/07/rwan…'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    path = "" if parts.path == "/" else parts.path
    if parts.query:
        path += "?" + parts.query
    if parts.fragment:
        path += "#" + parts.fragment
    if len(path) > SHORT_PATH + 2:
        return parts.netloc + path[:SHORT_PATH] + ELLIPSIS
    return parts.netloc + path
