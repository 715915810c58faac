"""HTML listing pages ("Latest News") read with CSS selectors from the configuration.

Each element matching ``selectors.item`` is one story; ``title``, ``link``, ``date``,
``summary`` and ``image`` are looked up inside it (``sel@attr`` reads an attribute). Up to
``pages.max_pages`` pages are read, following a "next" link or a ``{page}`` URL pattern.
A story listed twice (a teaser above the list, then in the list) becomes one draft holding
what both showed. With ``fetch_articles``, each story not yet in the store whose listing
lacks a date, summary or image has its own page read for og:/article:/JSON-LD metadata.

The first page is fetched conditionally: if it has not changed, nothing else is fetched.
A page or story that fails is listed in ``FetchResult.skipped`` with its URL; only a first
page that cannot be read fails the whole poll, or a listing whose items all prove unusable
(a selector that stopped matching must not look like a quiet news day). A field selector
that finds nothing in any item of a page is named as a warning in ``skipped``. A story whose
date fits none of ``date_formats`` is left out (rather than stored as if it had no date): once
the format is added, it comes in with the next poll that reads the listing.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import httpx
import lxml.html
from cssselect import SelectorError
from lxml import etree
from lxml.cssselect import CSSSelector

from newsbroadcast.config.model import HtmlSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.dates import parse_date
from newsbroadcast.sources.http import Fetcher
from newsbroadcast.sources.pagemeta import absolute_url, page_metadata, parse_html
from newsbroadcast.sources.urls import canonical_url

__all__ = ["Known", "fetch_html", "selector_problems"]

# Given story GUIDs, the ones already in the store (their pages need not be read again).
Known = Callable[[list[str]], set[str]]
_ATTR = re.compile(r"^(.*?)\s*@([A-Za-z_:][-\w:.]*)$")


_FIELDS = ("title", "link", "date", "summary", "image")


@dataclass(frozen=True)
class _Field:
    spec: str  # as configured, for messages
    selector: CSSSelector | None  # None: the item element itself
    attr: str | None


def fetch_html(
    source: HtmlSource,
    etag: str | None,
    last_modified: str | None,
    client: httpx.Client | None,
    *,
    user_agent: str,
    known: Known = lambda guids: set(),
) -> FetchResult:
    fields = _compile(source)
    with Fetcher(
        source.name,
        client,
        user_agent,
        source.timeout.total_seconds(),
        delay=source.delay.total_seconds(),
        robots=True,
    ) as fetcher:
        first = fetcher.get(source.url, etag, last_modified)  # a failure here fails the poll
        if first.not_modified:
            return FetchResult(
                etag=first.etag, last_modified=first.last_modified, not_modified=True
            )
        drafts: list[ArticleDraft] = []
        skipped: list[str] = []
        warnings: list[str] = []
        items_seen = 0
        page, number, seen_pages = first, 1, {first.url}
        while True:
            doc = parse_html(page.data, page.charset)
            base = _base_url(doc, page.url)
            listing = _items(doc, base, fields, source)
            drafts.extend(listing.drafts)
            skipped.extend(f"{page.url} {p}" for p in listing.problems)
            warnings.extend(f"{page.url}: {w}" for w in listing.warnings)
            items_seen += listing.items
            if not listing.items:
                if number == 1:
                    # A redesign that breaks the selectors must not look like a quiet news day.
                    raise SourceError(
                        source.name,
                        f"{page.url}: no element matches selectors.item "
                        f"{source.selectors.item!r} (has the page's layout changed?)",
                    )
                skipped.append(f"{page.url}: no element matches {source.selectors.item!r}")
            number += 1
            if number > source.pages.max_pages:
                break
            next_url = _next_page(doc, base, source, fields["next"], number)
            if not next_url or next_url in seen_pages:
                break
            seen_pages.add(next_url)
            try:
                page = fetcher.get(next_url)
            except SourceError as e:
                skipped.append(f"page {number}: {_detail(e)}")
                break
        drafts = _merge_repeats(drafts)
        if source.fetch_articles:
            drafts = _enrich(fetcher, drafts, known, skipped)
    # A story with no title anywhere cannot be announced.
    skipped.extend(
        f"{d.url}: no title in the listing or on its page" for d in drafts if not d.title
    )
    drafts = [d for d in drafts if d.title]
    if items_seen and not drafts:
        raise SourceError(
            source.name,
            f"{source.url}: {items_seen} item(s) found but none could be stored: "
            + "; ".join([*warnings, *skipped][:5]),
        )
    skipped = warnings + skipped
    return FetchResult(
        drafts=drafts, etag=first.etag, last_modified=first.last_modified, skipped=skipped
    )


# --- the listing ---------------------------------------------------------------------------


def selector_problems(source: HtmlSource) -> list[tuple[str, str]]:
    """``(key, why)`` for each selector of ``source`` that is not valid CSS, ``key`` as in
    the configuration (``selectors.title``, ``pages.next``). For ``check``."""
    problems = []
    for key, spec in _specs(source).items():
        try:
            _field(spec)
        except (SelectorError, etree.XPathError) as e:
            problems.append((key, f"{spec!r} is not a CSS selector ({e})"))
    return problems


def _specs(source: HtmlSource) -> dict[str, str]:
    sel = source.selectors
    specs = {
        "selectors.item": sel.item,
        "selectors.title": sel.title,
        "selectors.link": sel.link,
        "selectors.date": sel.date,
        "selectors.summary": sel.summary,
        "selectors.image": sel.image,
        "pages.next": source.pages.next,
    }
    return {key: spec for key, spec in specs.items() if spec is not None}


def _field(spec: str, default_attr: str | None = None) -> _Field:
    m = _ATTR.match(spec.strip())
    css, attr = (m.group(1), m.group(2)) if m else (spec.strip(), default_attr)
    return _Field(spec, CSSSelector(css) if css else None, attr)


def _compile(source: HtmlSource) -> dict[str, _Field | None]:
    """Every selector compiled once per poll, keyed by the field name ("title", "next")."""
    fields: dict[str, _Field | None] = dict.fromkeys(("item", *_FIELDS, "next"))
    for key, spec in _specs(source).items():
        name = key.split(".", 1)[1]
        try:
            fields[name] = _field(spec, "href" if key == "pages.next" else None)
        except (SelectorError, etree.XPathError) as e:
            raise SourceError(source.name, f"{key}: {spec!r} is not a CSS selector ({e})") from e
    return fields


@dataclass
class _Listing:
    """What one listing page gave."""

    drafts: list[ArticleDraft]
    problems: list[str]  # per item: where, and why it was left out
    warnings: list[str]  # per field: a selector that found nothing in any item
    items: int  # elements that matched selectors.item


def _items(
    doc: lxml.html.HtmlElement,
    base: str,
    fields: dict[str, _Field | None],
    source: HtmlSource,
) -> _Listing:
    item_field = fields["item"]
    assert item_field is not None and item_field.selector is not None
    listing = _Listing([], [], [], 0)
    found: set[str] = set()  # the fields that gave a value in at least one item

    def value(item: lxml.html.HtmlElement, name: str) -> str:
        text = _value(item, fields[name])
        if text.strip():
            found.add(name)
        return text

    for number, item in enumerate(item_field.selector(doc), start=1):
        listing.items = number
        title = _one_line(value(item, "title"))
        link = value(item, "link")
        date_text = value(item, "date")
        summary = _one_line(value(item, "summary"))
        image = absolute_url(value(item, "image"), base)
        url = absolute_url(link, base)
        if not url:
            listing.problems.append(
                f"item {number} ({title or 'untitled'!r}): no link to the story"
            )
            continue
        published = None
        if date_text.strip():
            try:
                published = parse_date(
                    date_text, source.date_formats, source.date_timezone, source.day_first
                )
            except ValueError as e:
                listing.problems.append(
                    f"item {number} ({url}): date not understood: {e}; the story is left "
                    "out until its date can be read (add its format to date_formats)"
                )
                continue
        listing.drafts.append(
            ArticleDraft(
                guid=url,
                title=title,
                url=url,
                summary=html.escape(summary, quote=False),
                image=image,
                published_at=published,
            )
        )
    for name in _FIELDS:
        field = fields[name]
        if listing.items and field is not None and name not in found:
            listing.warnings.append(
                f"warning: selectors.{name} {field.spec!r} found nothing in any of the "
                f"{listing.items} item(s) (has the page's layout changed?)"
            )
    return listing


def _value(item: lxml.html.HtmlElement, field: _Field | None) -> str:
    if field is None:
        return ""
    found = field.selector(item) if field.selector is not None else [item]
    for el in found:
        if field.attr:
            value = el.get(field.attr)
            if not value and field.attr == "src":  # lazy-loaded pictures
                value = el.get("data-src") or (el.get("srcset") or "").split(" ")[0]
            if value and value.strip():
                return value.strip()
        else:
            text = el.text_content()
            if text.strip():
                return text
    return ""


def _base_url(doc: lxml.html.HtmlElement, page_url: str) -> str:
    base = doc.find(".//base[@href]")
    return absolute_url(base.get("href"), page_url) or page_url if base is not None else page_url


def _next_page(
    doc: lxml.html.HtmlElement,
    base: str,
    source: HtmlSource,
    next_link: _Field | None,
    number: int,
) -> str | None:
    pages = source.pages
    if pages.pattern:
        return absolute_url(pages.pattern.replace("{page}", str(number)), source.url)
    if next_link is not None and next_link.selector is not None:
        for el in next_link.selector(doc):
            url = absolute_url(el.get(next_link.attr or "href"), base)
            if url:
                return url
    return None


def _merge_repeats(drafts: Iterable[ArticleDraft]) -> list[ArticleDraft]:
    """One draft per story; each field from the first occurrence that has it."""
    merged: dict[str, ArticleDraft] = {}
    for draft in drafts:
        key = canonical_url(draft.url) or draft.guid
        have = merged.get(key)
        merged[key] = draft if have is None else _fill(have, draft)
    return list(merged.values())


def _fill(have: ArticleDraft, other: ArticleDraft) -> ArticleDraft:
    return replace(
        have,
        title=have.title or other.title,
        summary=have.summary or other.summary,
        image=have.image or other.image,
        published_at=have.published_at or other.published_at,
        author=have.author or other.author,
        tags=have.tags or other.tags,
    )


# --- the stories' own pages ----------------------------------------------------------------


def _enrich(
    fetcher: Fetcher, drafts: list[ArticleDraft], known: Known, skipped: list[str]
) -> list[ArticleDraft]:
    already = known([d.guid for d in drafts])
    out: list[ArticleDraft] = []
    for draft in drafts:
        lacking = not (draft.title and draft.summary and draft.image and draft.published_at)
        if draft.guid in already or not lacking or not draft.url:
            out.append(draft)
            continue
        try:
            page = fetcher.get(draft.url)
        except SourceError as e:
            skipped.append(f"{_detail(e)} (article page not read; the listing's data is kept)")
            out.append(draft)
            continue
        meta = page_metadata(parse_html(page.data, page.charset), page.url)
        out.append(
            replace(
                draft,
                title=draft.title or meta.title or "",
                summary=draft.summary or html.escape(meta.description or "", quote=False),
                image=draft.image or meta.image,
                published_at=draft.published_at or meta.published_at,
                author=draft.author or meta.author,
                tags=draft.tags or meta.tags,
                language=draft.language or meta.language,
            )
        )
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _detail(e: SourceError) -> str:
    return str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
