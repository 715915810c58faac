"""Post text for social channels: rendered from the channel's template, fitted to its limit.

Pure: data in, text out. The text is rendered once, when the post is planned, and stored:
every retry sends exactly the same characters.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jinja2
import regex

from newsbroadcast.errors import PostTooLong, RenderError
from newsbroadcast.render.links import url_spans

ELLIPSIS = "…"
DEFAULT_MAX_HASHTAGS = 3
MAX_HASHTAG_GRAPHEMES = 64  # Bluesky refuses longer tags; no network shows them whole

# Where a sentence ends in scripts written without spaces (Chinese, Japanese: 。！？ and
# their halfwidth and fullwidth forms; the danda and the Ethiopic full stop too): a cut
# just after one reads as a whole sentence.
# The ASCII full stop is left out: in "価格は3.5%" it is a decimal point.
SENTENCE_ENDS = frozenset("。．｡！？!?।॥።")
# A clause ends here: the next best place when no sentence ends late enough.
CLAUSE_ENDS = frozenset("、，､；：,;")
_CUT_TRIM = frozenset(" ,;:.-–—、，")
# A hashtag word: letters with their marks, digits, the underscore. Spaces and hyphens only
# separate words (joined in CamelCase); any other character makes the tag unusable.
_TAG_WORD = regex.compile(r"[\p{L}\p{M}\p{Nd}_]+")
_TAG_SEPARATORS = regex.compile(r"[\s\-‐‑–]+")


@dataclass(frozen=True)
class PostStory:
    """What a social template may use."""

    title: str
    url: str | None
    summary: str  # plain text
    published_at: datetime | None
    author: str | None
    tags: tuple[str, ...]
    max_hashtags: int = DEFAULT_MAX_HASHTAGS  # the channel's cap on ``hashtags``
    language: str | None = None  # the story's language (BCP 47), when its source said

    @property
    def hashtags(self) -> str:
        """The tags that make valid hashtags, each once (case-insensitively), at most
        ``max_hashtags`` of them, space-separated."""
        return " ".join(hashtags(self.tags, self.max_hashtags))


def hashtag(tag: str) -> str:
    """'border management' → '#BorderManagement', 'central-asia' → '#CentralAsia'.

    '' when the tag makes no valid hashtag: nothing but digits ('2025'), another character
    than letters, digits, '_', spaces and hyphens ('C++', 'U.S.', "d'Ivoire": dropping it
    would make another word, so the tag is skipped rather than mangled), or over 64
    graphemes.
    """
    words = [w for w in _TAG_SEPARATORS.split(tag.strip()) if w]
    if not words or not all(_TAG_WORD.fullmatch(w) for w in words):
        return ""
    body = "".join(w[:1].upper() + w[1:] for w in words) if len(words) > 1 else words[0]
    if not regex.search(r"\p{L}", body) or len(graphemes(body)) > MAX_HASHTAG_GRAPHEMES:
        return ""
    return "#" + body


def hashtags(tags: tuple[str, ...] | list[str], limit: int = DEFAULT_MAX_HASHTAGS) -> list[str]:
    """The valid hashtags of ``tags`` in order, each once (compared case-insensitively:
    '#Kigali' and '#kigali' are one tag on every network), at most ``limit``."""
    chosen: dict[str, str] = {}
    for tag in tags:
        if len(chosen) >= limit:
            break
        made = hashtag(tag)
        if made:
            chosen.setdefault(made.casefold(), made)
    return list(chosen.values())


def graphemes(text: str) -> list[str]:
    """``text`` as the characters a reader sees (extended grapheme clusters): a cut between
    two of them never splits an emoji, a flag or a letter from its accent."""
    return regex.findall(r"\X", text)


def shorten(text: str, max_graphemes: int) -> str:
    """``text`` cut to at most ``max_graphemes`` graphemes, ellipsis included, '' when not
    even one grapheme and the ellipsis fit.

    The cut is always between graphemes, never inside a link (a link it would split goes
    whole, with what follows it: a text that is only a link gives ''), and at the best place
    in the last half: a word boundary, else the end of a sentence (。！？ …: scripts without
    spaces), else of a clause (、，), else an earlier word boundary, else any grapheme.
    """
    clusters = graphemes(text)
    if len(clusters) <= max_graphemes:
        return text
    if max_graphemes <= len(ELLIPSIS):
        return ""
    end = _cut_point(clusters[:max_graphemes], max_graphemes - len(ELLIPSIS))
    starts = _cluster_starts(clusters)
    for start, stop, _ in url_spans(text):
        first, last = _cluster_at(starts, start), _cluster_at(starts, stop)
        if first < end < last:
            end = first  # the whole link goes: a cut one would lead nowhere
    while end > 0 and clusters[end - 1] in _CUT_TRIM:  # whole clusters: never half of one
        end -= 1
    cut = "".join(clusters[:end])
    if not cut:
        return ""
    if any(stop == len(cut) for _, stop, _ in url_spans(cut)):
        return cut + " " + ELLIPSIS  # kept apart, or some networks link the ellipsis too
    return cut + ELLIPSIS


def _cut_point(room: list[str], limit: int) -> int:
    """How many graphemes to keep of ``room`` (``limit`` + 1 of them: a space just past the
    limit is a clean cut too)."""
    half = limit // 2
    space = max((i for i, c in enumerate(room) if c.isspace()), default=0)
    if space > half:
        return space
    for ends in (SENTENCE_ENDS, CLAUSE_ENDS):
        after = max((i for i in range(1, limit + 1) if room[i - 1] in ends), default=0)
        if after > half:
            return after
    return space if space > 0 else limit


def _cluster_starts(clusters: list[str]) -> list[int]:
    starts, at = [], 0
    for c in clusters:
        starts.append(at)
        at += len(c)
    starts.append(at)
    return starts


def _cluster_at(starts: list[int], index: int) -> int:
    """The number of whole clusters before character ``index``."""
    return bisect.bisect_right(starts, index) - 1


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
