"""The Jinja2 environment every template runs in, and the two ways article HTML leaves it:
sanitised HTML (email bodies) and plain text (text parts, social posts)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import nh3
from babel.dates import format_date as babel_format_date
from markupsafe import Markup

from newsbroadcast.render import i18n

__all__ = ["format_date", "html_to_text", "make_environment", "sanitize_html"]

# Enough for a newsroom's summaries; anything that could run code, load a resource or break
# the email's layout (img, table, div with styles) is left out.
ALLOWED_TAGS = frozenset({"p", "a", "em", "strong", "b", "i", "br", "ul", "ol", "li", "blockquote"})
ALLOWED_URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Removed together with their content: their text is code or chrome, never prose.
_DROPPED_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "template",
        "iframe",
        "object",
        "embed",
        "svg",
        "math",
        "noscript",
        "textarea",
        "select",
        "title",
    }
)
# English month names, so "10 July 2018" does not depend on the process's locale.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_BLOCK_TAGS = frozenset(
    {
        "p",
        "br",
        "div",
        "li",
        "ul",
        "ol",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "td",
        "th",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "hr",
        "pre",
        "figure",
        "figcaption",
        "dd",
        "dt",
    }
)
_WHITESPACE = re.compile(r"\s+")


def make_environment(templates_dir: Path, snapshot: bool = False) -> jinja2.Environment:
    """Templates under ``templates_dir``; ``*.html.j2`` and ``*.html`` are autoescaped,
    text templates are not. Undefined names are errors, so a typo in a template fails the
    render instead of silently sending a blank.

    ``snapshot``: read every template now and never look at the disk again, so a template
    saved later (perhaps broken) changes nothing until a new environment is made."""
    loader: jinja2.BaseLoader = (
        SnapshotLoader(templates_dir) if snapshot else jinja2.FileSystemLoader(templates_dir)
    )
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2", "htm.j2", "xml.j2"),
            disabled_extensions=(),
            default_for_string=False,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["date"] = format_date
    i18n.install(env, templates_dir)
    env.filters["sanitize_html"] = lambda s: Markup(sanitize_html(s or ""))
    env.filters["html_to_text"] = lambda s: html_to_text(s or "")
    return env


class SnapshotLoader(jinja2.BaseLoader):
    """Every file under a folder, read once; error messages still name the real file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, str] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not any(p.startswith(".") for p in path.parts):
                    try:
                        text = path.read_text(encoding="utf-8")
                    except (OSError, UnicodeDecodeError):
                        continue  # not a template (an image, a compiled catalog)
                    self.files[path.relative_to(root).as_posix()] = text

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.files:
            raise jinja2.TemplateNotFound(template)
        return self.files[template], str(self.root / template), lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self.files)


def format_date(value: datetime | None, tz: str | None = None, lang: str | None = None) -> str:
    """``10 July 2018`` (``10 juillet 2018`` in French: the render's language, see i18n,
    unless ``lang`` is given); in time zone ``tz`` when given (naive values are taken as
    UTC); ``""`` for None, so an undated story renders without a gap of placeholder text."""
    if value is None:
        return ""
    if tz is not None:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(ZoneInfo(tz))
    lang = lang or i18n.current_language()
    if lang == i18n.DEFAULT_LANGUAGE:
        return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"
    # Babel's CLDR data: month names (and their grammatical case) as the language writes them.
    return babel_format_date(value.date(), "d MMMM y", locale=lang)


def sanitize_html(fragment: str, base_url: str | None = None) -> str:
    """``fragment`` reduced to simple prose markup: ALLOWED_TAGS, ``href``/``title`` on links,
    only http(s) and mailto URLs. Scripts, styles, event handlers and ``javascript:`` URLs are
    gone. Relative links are made absolute against ``base_url``, or dropped without one (an
    email has no page to be relative to)."""
    return _cleaner(base_url).clean(fragment)


@lru_cache(maxsize=64)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    # Building a Cleaner compiles its rules; one per base URL is reused for every summary.
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes={"a": {"href", "title"}},
        url_schemes=set(ALLOWED_URL_SCHEMES),
        url_relative=("rewrite_with_base", base_url) if base_url else "deny",
        strip_comments=True,
        link_rel="noopener noreferrer",
    )


def html_to_text(fragment: str) -> str:
    """The readable text of an HTML fragment on one line: tags removed (script and style
    with their content), entities decoded, whitespace collapsed to single spaces."""
    parser = _TextParser()
    parser.feed(fragment)
    parser.close()
    return _WHITESPACE.sub(" ", "".join(parser.parts)).strip()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            # "<p>a</p><p>b</p>" must read "a b", not "ab".
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_WITH_CONTENT:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
