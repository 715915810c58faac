"""Post text for social channels: rendered from the channel's template, fitted to its limit.

Pure: data in, text out. The text is rendered once, when the post is planned, and stored:
every retry sends exactly the same characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jinja2

ELLIPSIS = "…"


@dataclass(frozen=True)
class PostStory:
    """What a social template may use."""

    title: str
    url: str | None
    summary: str  # plain text
    published_at: datetime | None
    author: str | None
    tags: tuple[str, ...]

    @property
    def hashtags(self) -> str:
        return " ".join(h for h in (hashtag(t) for t in self.tags) if h)


def hashtag(tag: str) -> str:
    """'border management' → '#BorderManagement'; '' when nothing usable is left."""
    words = re.findall(r"\w+", tag)
    if not words:
        return ""
    body = "".join(w[:1].upper() + w[1:] for w in words) if len(words) > 1 else words[0]
    return "#" + body


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars`` characters, with an ellipsis."""
    if len(text) <= max_chars:
        return text
    if max_chars <= len(ELLIPSIS):
        return ""
    cut = text[: max_chars - len(ELLIPSIS) + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > 0 else cut[: max_chars - len(ELLIPSIS)]
    return cut.rstrip(" ,;:.-–—") + ELLIPSIS


def fit(
    render: Callable[[str], str],
    summary: str,
    limit: int,
    measure: Callable[[str], int] = len,
) -> str:
    """Render with the longest summary that fits ``limit`` as measured by ``measure``.

    Only the summary is shortened: titles, links, hashtags and mentions in the template
    stay whole. Raises ValueError when even an empty summary does not fit.
    """
    text = render(summary)
    if measure(text) <= limit:
        return text
    lo, hi = 0, len(summary)  # binary search on the summary's length: few renders
    best: str | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = render(shorten(summary, mid))
        if measure(candidate) <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise ValueError(
            f"the post is {measure(render(''))} long without its summary; the limit is {limit}"
        )
    return best


def render_post(
    template: jinja2.Template, story: PostStory, limit: int, measure: Callable[[str], int] = len
) -> str:
    """The post text for ``story``, fitted to ``limit``."""

    def render(summary: str) -> str:
        text = template.render(story=story, summary=summary)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    return fit(render, story.summary, limit, measure)
