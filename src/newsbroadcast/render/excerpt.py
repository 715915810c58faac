"""Shortening what readers see: subjects, preheaders and story excerpts.

Text is cut between grapheme clusters (``\\X``), never inside one: a flag, a family emoji or
a letter with its accents stays whole. Where it can, a cut falls at a sentence's end, else at
a word's end; text without spaces (Chinese, Japanese) is cut between clusters.

``excerpt_html`` shortens sanitised HTML by its visible text and closes every tag it left
open, so an excerpt is never broken markup; loose text is wrapped in ``<p>``, so every
excerpt ends the same way before its "Read more" link. ``html_paragraphs`` gives the same
excerpt as text paragraphs for the text part. Pure.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from html.parser import HTMLParser

import regex

__all__ = ["ELLIPSIS", "excerpt_html", "html_paragraphs", "shorten"]

ELLIPSIS = "…"
_CLUSTER = regex.compile(r"\X")
# A sentence ends at . ! ? … (closing quotes and brackets may follow) before a space, or at
# the ideographic full stops, which need no space after them.
_SENTENCE_END = regex.compile(r"""[.!?…]["'”’»)\]]*(?=\s)|[。！？]["'”’»)\]]*""")
_SPACE = regex.compile(r"\s+")
# A cut at a sentence's end is preferred unless it keeps less than this share of the room:
# one short sentence and then nothing would read worse than a longer text cut at a word.
_SENTENCE_SHARE = 0.5
_WORD_SHARE = 0.3

# The blocks of sanitised summaries (render.templates.ALLOWED_TAGS); everything else there
# is inline and belongs inside one.
_BLOCKS = frozenset({"p", "ul", "ol", "li", "blockquote"})
_VOID = frozenset({"br"})


def shorten(text: str, limit: int, *, sentences: bool = False, code_points: bool = False) -> str:
    """``text`` if it fits in ``limit``; else its start, cut at a word's end (at a sentence's
    end when ``sentences`` and one is near the limit) and followed by "…", which counts.
    ``limit`` counts grapheme clusters, or code points when ``code_points`` (a header's
    length); ``limit`` <= 0 means no limit."""
    if limit <= 0 or _measure(text, code_points) <= limit:
        return text
    head = _head(text, limit - len(ELLIPSIS), code_points)
    kept = _boundary(head, text[len(head) :], sentences)
    # A sentence's end needs no "…": the story's link says there is more.
    return kept if sentences and _ends_sentence(kept) else kept + ELLIPSIS


def _measure(text: str, code_points: bool) -> int:
    return len(text) if code_points else len(_CLUSTER.findall(text))


def _head(text: str, room: int, code_points: bool) -> str:
    """The longest run of whole clusters from the start that fits in ``room``."""
    used = 0
    end = 0
    for cluster in _CLUSTER.finditer(text):
        size = len(cluster.group()) if code_points else 1
        if used + size > room:
            break
        used += size
        end = cluster.end()
    return text[:end]


def _boundary(head: str, rest: str, sentences: bool) -> str:
    if not rest or rest[:1].isspace():
        return head.rstrip()  # the cut already falls between two words
    if sentences:
        ends = [m.end() for m in _SENTENCE_END.finditer(head)]
        if ends and ends[-1] >= len(head) * _SENTENCE_SHARE:
            return head[: ends[-1]].rstrip()
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= len(head) * _WORD_SHARE:
        return head[:space].rstrip()
    return head  # one long word, or a script without spaces: between two clusters


def _ends_sentence(text: str) -> bool:
    tail = max(0, len(text) - 8)
    return any(m.end() == len(text) for m in _SENTENCE_END.finditer(text + " ", tail))


# --- HTML ---------------------------------------------------------------------------------


@dataclass
class _Token:
    kind: str  # "start", "end", "text"
    tag: str = ""
    attrs: tuple[tuple[str, str | None], ...] = ()
    text: str = ""
    at: int = 0  # for text: where it starts in the visible text


class _Tokens(HTMLParser):
    """Sanitised HTML as tokens, loose text wrapped in ``<p>``, whitespace collapsed as a
    browser shows it, and the visible text those tokens make (``visible``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[_Token] = []
        self.visible = ""
        self._open: list[str] = []
        self._loose = False  # inside a <p> of our own

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._close_loose()
            self._block_break()
        else:
            self._open_loose()
        self.tokens.append(_Token("start", tag, tuple(attrs)))
        if tag in _VOID:
            self._add_space("\n")
        else:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._open or tag in _VOID:
            return  # nh3's output is balanced; a stray end tag is simply not ours to echo
        while self._open:
            closed = self._open.pop()
            self.tokens.append(_Token("end", closed))
            if closed == tag:
                break
        if tag in _BLOCKS:
            self._block_break()

    def handle_data(self, data: str) -> None:
        text = _SPACE.sub(" ", data)
        if not self._open and not self._loose and not text.strip():
            return  # the line breaks between two blocks
        self._open_loose()
        if self.visible[-1:].isspace() or not self.visible:
            text = text.lstrip(" ")
        if text:
            self.tokens.append(_Token("text", text=text, at=len(self.visible)))
            self.visible += text

    def close(self) -> None:
        super().close()
        while self._open:
            self.tokens.append(_Token("end", self._open.pop()))
        self._close_loose()

    def _open_loose(self) -> None:
        if not self._open and not self._loose:
            self.tokens.append(_Token("start", "p"))
            self._loose = True

    def _close_loose(self) -> None:
        if self._loose and not self._open:
            self.tokens.append(_Token("end", "p"))
            self._loose = False
            self._block_break()

    def _block_break(self) -> None:
        # Two blocks read as two sentences: "a</p><p>b" is "a b", never "ab".
        self._add_space(" ")

    def _add_space(self, space: str) -> None:
        if self.visible and not self.visible[-1].isspace():
            self.visible += space


def _tokens(fragment: str) -> _Tokens:
    parser = _Tokens()
    parser.feed(fragment)
    parser.close()
    return parser


def excerpt_html(fragment: str, limit: int) -> str:
    """Sanitised HTML ``fragment`` shortened to about ``limit`` visible characters (grapheme
    clusters; 0: whole) at a sentence's or word's end, every tag closed; loose text wrapped
    in ``<p>``. Pass only sanitised HTML: attributes are written back as they come."""
    parsed = _tokens(fragment)
    full = parsed.visible.rstrip()
    kept = shorten(full, limit, sentences=True)
    ellipsis = kept.endswith(ELLIPSIS) and kept != full
    stop = len(kept) - len(ELLIPSIS) if ellipsis else len(kept)

    # Where the first text at or after each token starts: a start tag whose text is all
    # past the cut is left out, so the excerpt never ends in an empty element.
    next_text = [len(full)] * (len(parsed.tokens) + 1)
    for i in range(len(parsed.tokens) - 1, -1, -1):
        token = parsed.tokens[i]
        next_text[i] = token.at if token.kind == "text" else next_text[i + 1]

    out: list[str] = []
    open_tags: list[str] = []
    for i, token in enumerate(parsed.tokens):
        if token.kind == "text":
            if token.at >= stop:
                break
            piece = token.text[: stop - token.at]
            last = token.at + len(token.text) >= stop
            out.append(html.escape(piece.rstrip() + ELLIPSIS if last and ellipsis else piece))
            if last:
                break
        elif token.kind == "start":
            if stop < len(full) and next_text[i] >= stop:
                break
            out.append(_start_tag(token))
            if token.tag not in _VOID:
                open_tags.append(token.tag)
        elif open_tags and open_tags[-1] == token.tag:
            out.append(f"</{open_tags.pop()}>")
    out.extend(f"</{tag}>" for tag in reversed(open_tags))
    return "".join(out)


def _start_tag(token: _Token) -> str:
    attrs = "".join(
        f' {name}="{html.escape(value or "", quote=True)}"' for name, value in token.attrs
    )
    return f"<{token.tag}{attrs}>"


def html_paragraphs(fragment: str) -> list[str]:
    """The text of sanitised HTML as paragraphs, one per block (``<br>`` a line break in
    one, list items marked "- "), whitespace collapsed; empty blocks left out."""
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = "".join(current)
        text = "\n".join(line.strip() for line in text.split("\n")).strip()
        if text:
            paragraphs.append(text)
        current.clear()

    for token in _tokens(fragment).tokens:
        if token.kind == "text":
            current.append(token.text)
        elif token.tag == "br":
            current.append("\n")
        elif token.tag in _BLOCKS:
            flush()
            if token.kind == "start" and token.tag == "li":
                current.append("- ")
    flush()
    return paragraphs
