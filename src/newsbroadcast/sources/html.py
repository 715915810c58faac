"""HTML listing pages ("Latest News") read with CSS selectors from the configuration.

Each element matching ``selectors.item`` is one story; ``title``, ``link``, ``date``,
``summary`` and ``image`` are looked up inside it (``sel@attr`` reads an attribute). Up to
``pages.max_pages`` pages are read, following a "next" link or a ``{page}`` URL pattern.
A story listed twice (a teaser above the list, then in the list) becomes one draft holding
what both showed. With ``fetch_articles``, each story not yet in the store whose listing
lacks a date, summary or image has its own page read for og:/article:/JSON-LD metadata.

The first page is fetched conditionally: if it has not changed, nothing else is fetched.
A page or story that fails is listed in ``FetchResult.skipped`` with its URL; only a first
page that cannot be read fails the whole poll.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import httpx
import lxml.html
from cssselect import SelectorError
from lxml.cssselect import CSSSelector

from newsbroadcast.config import HtmlSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.dates import parse_date
from newsbroadcast.sources.pagemeta import absolute_url, page_metadata, parse_html
from newsbroadcast.sources.web import PoliteFetcher
from newsbroadcast.store import canonical_url

__all__ = ["Known", "fetch_html"]

# Given story GUIDs, the ones already in the store (their pages need not be read again).
Known = Callable[[list[str]], set[str]]
_ATTR = re.compile(r"^(.*?)\s*@([A-Za-z_:][-\w:.]*)$")


@dataclass(frozen=True)
class _Field:
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
    with PoliteFetcher(
        source.name,
        client,
        user_agent,
        source.timeout.total_seconds(),
        source.delay.total_seconds(),
    ) as fetcher:
        first = fetcher.get(source.url, etag, last_modified)  # a failure here fails the poll
        if first.not_modified:
            return FetchResult(
                etag=first.etag, last_modified=first.last_modified, not_modified=True
            )
        drafts: list[ArticleDraft] = []
        skipped: list[str] = []
        page, number, seen_pages = first, 1, {first.url}
        while True:
            doc = parse_html(page.data, page.charset)
            base = _base_url(doc, page.url)
            found, problems = _items(doc, base, fields, source)
            drafts.extend(found)
            skipped.extend(f"{page.url} {p}" for p in problems)
            if not found and not problems:
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
            next_url = _next_page(doc, base, source, number)
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
    return FetchResult(
        drafts=drafts, etag=first.etag, last_modified=first.last_modified, skipped=skipped
    )


# --- the listing ---------------------------------------------------------------------------


def _compile(source: HtmlSource) -> dict[str, _Field | None]:
    sel = source.selectors
    specs = {
        "item": sel.item,
        "title": sel.title,
        "link": sel.link,
        "date": sel.date,
        "summary": sel.summary,
        "image": sel.image,
    }
    fields: dict[str, _Field | None] = {}
    for key, spec in specs.items():
        if spec is None:
            fields[key] = None
            continue
        m = _ATTR.match(spec.strip())
        css, attr = (m.group(1), m.group(2)) if m else (spec.strip(), None)
        try:
            fields[key] = _Field(CSSSelector(css) if css else None, attr)
        except SelectorError as e:
            raise SourceError(
                source.name, f"selectors.{key}: {spec!r} is not a CSS selector ({e})"
            ) from e
    return fields


def _items(
    doc: lxml.html.HtmlElement,
    base: str,
    fields: dict[str, _Field | None],
    source: HtmlSource,
) -> tuple[list[ArticleDraft], list[str]]:
    item_field = fields["item"]
    assert item_field is not None and item_field.selector is not None
    drafts: list[ArticleDraft] = []
    problems: list[str] = []
    for number, item in enumerate(item_field.selector(doc), start=1):
        title = _one_line(_value(item, fields["title"]))
        url = absolute_url(_value(item, fields["link"]), base)
        if not url:
            problems.append(f"item {number} ({title or 'untitled'!r}): no link to the story")
            continue
        published = None
        date_text = _value(item, fields["date"])
        if date_text.strip():
            try:
                published = parse_date(
                    date_text, source.date_formats, source.date_timezone, source.day_first
                )
            except ValueError as e:
                problems.append(f"item {number} ({url}): date not understood: {e}")
        summary = _one_line(_value(item, fields["summary"]))
        drafts.append(
            ArticleDraft(
                guid=url,
                title=title,
                url=url,
                summary=html.escape(summary, quote=False),
                image=absolute_url(_value(item, fields["image"]), base),
                published_at=published,
            )
        )
    return drafts, problems


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
    doc: lxml.html.HtmlElement, base: str, source: HtmlSource, number: int
) -> str | None:
    pages = source.pages
    if pages.pattern:
        return absolute_url(pages.pattern.replace("{page}", str(number)), source.url)
    if pages.next:
        m = _ATTR.match(pages.next.strip())
        css, attr = (m.group(1), m.group(2)) if m else (pages.next.strip(), "href")
        for el in CSSSelector(css)(doc):
            url = absolute_url(el.get(attr), base)
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
    fetcher: PoliteFetcher, drafts: list[ArticleDraft], known: Known, skipped: list[str]
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
            )
        )
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _detail(e: SourceError) -> str:
    return str(e).split(": ", 1)[1] if ": " in str(e) else str(e)
