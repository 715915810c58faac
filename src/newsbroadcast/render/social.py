"""Post text for social channels: rendered from the channel's template, fitted to its limit.

Pure: data in, text out. The text is rendered once, when the post is planned, and stored:
every retry sends exactly the same characters.
"""

from __future__ import annotations

import dataclasses
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jinja2
import regex

from newsbroadcast.errors import PostTooLong, RenderError

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


def graphemes(text: str) -> list[str]:
    """``text`` as the characters a reader sees (extended grapheme clusters): a cut between
    two of them never splits an emoji, a flag or a letter from its accent."""
    return regex.findall(r"\X", text)


def shorten(text: str, max_graphemes: int) -> str:
    """``text`` cut to at most ``max_graphemes`` graphemes, ellipsis included: at the last
    word boundary when there is one, else (a long word, a script without spaces) at a
    grapheme boundary. '' when not even one grapheme and the ellipsis fit."""
    clusters = graphemes(text)
    if len(clusters) <= max_graphemes:
        return text
    if max_graphemes <= len(ELLIPSIS):
        return ""
    # One grapheme more than the room before the ellipsis: a space there is a clean cut.
    room = clusters[:max_graphemes]
    space = max((i for i, c in enumerate(room) if c.isspace()), default=0)
    end = space if space > 0 else max_graphemes - len(ELLIPSIS)
    cut = "".join(clusters[:end]).rstrip(" ,;:.-–—")
    return cut + ELLIPSIS if cut else ""


def _longest_fitting(
    render: Callable[[str], str], text: str, limit: int, measure: Callable[[str], int], least: int
) -> str | None:
    """``render`` of ``text`` shortened as little as needed to fit, keeping at least
    ``least`` graphemes' room; None when even that does not fit."""
    whole = render(text)
    if measure(whole) <= limit:
        return whole
    lo, hi = least, len(graphemes(text)) - 1  # binary search on the length: few renders
    best: str | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        short = shorten(text, mid)
        candidate = render(short) if short or least == 0 else None
        if candidate is not None and measure(candidate) <= limit:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def fit(
    render: Callable[[str], str],
    summary: str,
    limit: int,
    measure: Callable[[str], int] = len,
) -> str:
    """Render with the longest summary that fits ``limit`` as measured by ``measure``.

    Only the summary is shortened here: whatever else the template holds stays whole.
    Raises PostTooLong when even an empty summary does not fit.
    """
    best = _longest_fitting(render, summary, limit, measure, least=0)
    if best is None:
        raise PostTooLong(
            f"the post is {measure(render(''))} long without its summary; the limit is {limit}"
        )
    return best


def render_post(
    template: jinja2.Template, story: PostStory, limit: int, measure: Callable[[str], int] = len
) -> str:
    """The post text for ``story``, fitted to ``limit``.

    The summary is shortened first; when the title alone is too long, the post goes without
    its summary and the title is shortened too (at a word, else a grapheme, with an
    ellipsis). Links, hashtags and the template's own text are never cut. Raises
    PostTooLong when not even the title's first word fits, RenderError when the template
    fails for this story.
    """

    def render(title: str, summary: str) -> str:
        shown = dataclasses.replace(story, title=title)
        try:
            text = template.render(story=shown, summary=summary)
        except Exception as e:  # the admin's template may raise whatever its expressions do
            raise RenderError(_template_failure(template, e)) from e
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    try:
        return fit(lambda summary: render(story.title, summary), story.summary, limit, measure)
    except PostTooLong as e:
        too_long = e
    # At least one grapheme of the title and its ellipsis: a post of only a link says nothing.
    best = _longest_fitting(lambda title: render(title, ""), story.title, limit, measure, 2)
    if best is None:
        raise PostTooLong(
            f"{too_long}, and still too long with the title cut to its first character "
            f"(the template's text, link and hashtags are too long for {limit})"
        ) from None
    return best


def _template_failure(template: jinja2.Template, error: Exception) -> str:
    """'social/x.txt.j2:3: UndefinedError: …': where the template failed, and why."""
    name = template.name or "the social template"
    line = None
    # Jinja rewrites tracebacks so that template frames carry the template's file and line.
    for frame in traceback.extract_tb(error.__traceback__):
        if template.filename and frame.filename == template.filename:
            line = frame.lineno
    where = f"{name}:{line}" if line else name
    return f"{where}: {type(error).__name__}: {error}"
