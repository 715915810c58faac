"""What an article's own web page says about itself.

Read in order of trust: JSON-LD (``NewsArticle``, ``Article``, ``BlogPosting`` …), Open Graph
(``og:*``, ``article:*``), Twitter cards, then plain HTML (``<title>``, ``<meta
name="description">``). ``page_metadata`` never raises on bad markup: it returns what it found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from newsbroadcast.sources.dates import parse_date
from newsbroadcast.sources.language import language_tag

__all__ = ["PageMeta", "absolute_url", "page_metadata", "parse_html"]

_ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "blogposting",
    "report",
    "webpage",
}


@dataclass(frozen=True)
class PageMeta:
    title: str | None = None
    description: str | None = None
    image: str | None = None
    published_at: datetime | None = None
    author: str | None = None
    canonical_url: str | None = None
    tags: tuple[str, ...] = ()
    language: str | None = None  # BCP 47, from JSON-LD, <html lang>, og:locale


def parse_html(data: bytes, charset: str | None = None) -> lxml.html.HtmlElement:
    """A document from bytes; the HTTP charset if known, else what the page declares."""
    parser = lxml.html.HTMLParser(encoding=charset) if charset else None
    try:
        return lxml.html.document_fromstring(data, parser=parser)
    except (etree.ParserError, LookupError, ValueError):
        # An empty page, or a charset label lxml does not know: decode leniently ourselves.
        text = data.decode(charset or "utf-8", "replace") if data.strip() else "<html></html>"
        return lxml.html.document_fromstring(text)


def absolute_url(url: str | None, base: str) -> str | None:
    """``url`` resolved against ``base``, if it is then an http(s) URL with a host."""
    if not url or not url.strip():
        return None
    try:
        joined = urljoin(base, url.strip())
        parts = urlsplit(joined)
    except ValueError:
        return None
    return joined if parts.scheme in ("http", "https") and parts.netloc else None


def page_metadata(doc: lxml.html.HtmlElement, base_url: str) -> PageMeta:
    meta: dict[str, str] = {}
    for el in doc.iter("meta"):
        key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
        value = (el.get("content") or "").strip()
        if key and value:
            meta.setdefault(key, value)  # the first of repeated tags is the main one
    ld = _json_ld_article(doc)
    title_el = doc.find(".//title")
    canonical = next(
        (
            link.get("href")
            for link in doc.iter("link")
            if "canonical" in (link.get("rel") or "").lower().split()
        ),
        None,
    )
    title = (
        _text(ld.get("headline"))
        or meta.get("og:title")
        or meta.get("twitter:title")
        or (" ".join(title_el.text_content().split()) if title_el is not None else None)
    )
    description = (
        _text(ld.get("description"))
        or meta.get("og:description")
        or meta.get("twitter:description")
        or meta.get("description")
    )
    # The first declared picture that is an http(s) URL: a junk JSON-LD value must not hide
    # a good og:image.
    images = (_ld_image(ld.get("image")), meta.get("og:image"), meta.get("twitter:image"))
    image = next((u for u in (absolute_url(i, base_url) for i in images) if u), None)
    published = _text(ld.get("datePublished")) or meta.get("article:published_time")
    keywords = ld.get("keywords")
    if isinstance(keywords, str):
        keywords = keywords.split(",")
    tags = [t for t in (keywords or []) if isinstance(t, str)] + [
        el.get("content", "")
        for el in doc.iter("meta")
        if (el.get("property") or "").lower() == "article:tag"
    ]
    return PageMeta(
        title=" ".join(title.split()) if title else None,
        description=description,
        image=image,
        published_at=_date(published),
        author=_ld_author(ld.get("author")) or meta.get("author") or None,
        canonical_url=absolute_url(canonical or meta.get("og:url"), base_url),
        tags=tuple(dict.fromkeys(" ".join(t.split()) for t in tags if t.strip())),
        language=_language(doc, ld, meta),
    )


def _language(doc: lxml.html.HtmlElement, ld: dict[str, Any], meta: dict[str, str]) -> str | None:
    """The page's language: the article's own (JSON-LD ``inLanguage``), the document's
    (``<html lang>``), then what the sharing tags or headers say."""
    in_language = ld.get("inLanguage")
    if isinstance(in_language, dict):  # schema.org allows a Language object
        in_language = in_language.get("alternateName") or in_language.get("name")
    candidates = [
        _text(in_language),
        doc.get("lang") or doc.get("{http://www.w3.org/XML/1998/namespace}lang"),
        meta.get("og:locale"),
        meta.get("language"),
        next(
            (
                el.get("content")
                for el in doc.iter("meta")
                if (el.get("http-equiv") or "").strip().lower() == "content-language"
            ),
            None,
        ),
    ]
    return next((tag for tag in map(language_tag, candidates) if tag), None)


def _json_ld_article(doc: lxml.html.HtmlElement) -> dict[str, Any]:
    for script in doc.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue  # broken JSON-LD is common; the other sources of metadata remain
        for node in _nodes(data):
            kinds = node.get("@type")
            kinds = kinds if isinstance(kinds, list) else [kinds]
            if any(isinstance(k, str) and k.lower() in _ARTICLE_TYPES for k in kinds):
                return node
    return {}


def _nodes(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, list):
        for item in data:
            yield from _nodes(item)
    elif isinstance(data, dict):
        yield data
        yield from _nodes(data.get("@graph") or [])


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _ld_image(value: Any) -> str | None:
    if isinstance(value, list):
        return next((u for u in map(_ld_image, value) if u), None)
    if isinstance(value, dict):
        return _text(value.get("url")) or _text(value.get("contentUrl"))
    return _text(value)


def _ld_author(value: Any) -> str | None:
    people = value if isinstance(value, list) else [value]
    names = [
        p.strip() if isinstance(p, str) else _text(p.get("name")) if isinstance(p, dict) else None
        for p in people
    ]
    return ", ".join(dict.fromkeys(n for n in names if n)) or None


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_date(text)
    except ValueError:
        return None
