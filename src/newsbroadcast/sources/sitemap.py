"""Google News sitemaps: ``<url>`` entries with ``<news:news>`` (title, publication date,
keywords, language) and ``<image:image>``; a ``<sitemapindex>`` is followed to its
sitemaps (the most recently modified first, up to ``max_sitemaps``).

The root sitemap is fetched conditionally; a child sitemap or an entry that cannot be read is
listed in ``FetchResult.skipped`` with its URL and the rest is kept.
"""

from __future__ import annotations

import httpx
from lxml import etree

from newsbroadcast.config.model import SitemapSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.dates import parse_date
from newsbroadcast.sources.http import Fetcher, Page
from newsbroadcast.sources.language import language_tag
from newsbroadcast.sources.pagemeta import absolute_url

__all__ = ["fetch_sitemap"]

_SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_NEWS = "{http://www.google.com/schemas/sitemap-news/0.9}"
_IMAGE = "{http://www.google.com/schemas/sitemap-image/1.1}"
_ACCEPT = "application/xml, text/xml;q=0.9, */*;q=0.5"


def fetch_sitemap(
    source: SitemapSource,
    etag: str | None,
    last_modified: str | None,
    client: httpx.Client | None,
    *,
    user_agent: str,
) -> FetchResult:
    with Fetcher(
        source.name,
        client,
        user_agent,
        source.timeout.total_seconds(),
        delay=source.delay.total_seconds(),
        robots=True,
    ) as fetcher:
        root_page = fetcher.get(source.url, etag, last_modified, accept=_ACCEPT, what="sitemap")
        if root_page.not_modified:
            return FetchResult(
                etag=root_page.etag, last_modified=root_page.last_modified, not_modified=True
            )
        root = _parse(source.name, root_page)
        drafts: list[ArticleDraft] = []
        skipped: list[str] = []
        if root.tag == f"{_SM}sitemapindex":
            children = _children(root, root_page.url)
            for url in children[: source.max_sitemaps]:
                try:
                    page = fetcher.get(url, accept=_ACCEPT, what="sitemap")
                    child = _parse(source.name, page)
                except SourceError as e:
                    skipped.append(str(e).split(": ", 1)[-1])
                    continue
                if child.tag != f"{_SM}urlset":
                    skipped.append(f"{url}: not a <urlset> sitemap")
                    continue
                _entries(child, page.url, drafts, skipped)
        elif root.tag == f"{_SM}urlset":
            _entries(root, root_page.url, drafts, skipped)
        else:
            raise SourceError(
                source.name,
                f"{root_page.url}: not a sitemap (the root element is {root.tag!r}, "
                "expected <urlset> or <sitemapindex>)",
            )
    return FetchResult(
        drafts=drafts,
        etag=root_page.etag,
        last_modified=root_page.last_modified,
        skipped=skipped,
    )


def _parse(name: str, page: Page) -> etree._Element:
    # No entities, no network, no huge trees: a sitemap is data from another site.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(page.data, parser=parser)
    except etree.XMLSyntaxError as e:
        raise SourceError(name, f"{page.url}: not well-formed XML ({e})") from e
    if root is None:
        raise SourceError(name, f"{page.url}: empty document")
    return root


def _children(index: etree._Element, base: str) -> list[str]:
    found: list[tuple[str, str]] = []
    for node in index.iter(f"{_SM}sitemap"):
        url = absolute_url(node.findtext(f"{_SM}loc"), base)
        if url:
            found.append((node.findtext(f"{_SM}lastmod") or "", url))
    # Newest first: with a cap, the sitemaps that hold today's news are read.
    return [url for _, url in sorted(found, key=lambda f: f[0], reverse=True)]


def _entries(
    urlset: etree._Element, base: str, drafts: list[ArticleDraft], skipped: list[str]
) -> None:
    for number, node in enumerate(urlset.iter(f"{_SM}url"), start=1):
        url = absolute_url(node.findtext(f"{_SM}loc"), base)
        where = url or f"{base} entry {number}"
        if not url:
            skipped.append(f"{where}: no <loc> URL")
            continue
        news = node.find(f"{_NEWS}news")
        title = " ".join((news.findtext(f"{_NEWS}title") or "").split()) if news is not None else ""
        if news is None or not title:
            skipped.append(f"{where}: no <news:title>")
            continue
        published = None
        when = (news.findtext(f"{_NEWS}publication_date") or "").strip()
        if when:
            try:
                published = parse_date(when)
            except ValueError:
                skipped.append(f"{where}: publication_date {when!r} not understood (kept undated)")
        keywords = news.findtext(f"{_NEWS}keywords") or ""
        language = language_tag(news.findtext(f"{_NEWS}publication/{_NEWS}language"))
        image = node.find(f"{_IMAGE}image")
        drafts.append(
            ArticleDraft(
                guid=url,
                title=title,
                url=url,
                image=absolute_url(image.findtext(f"{_IMAGE}loc"), base)
                if image is not None
                else None,
                tags=tuple(dict.fromkeys(k.strip() for k in keywords.split(",") if k.strip())),
                published_at=published,
                language=language,
            )
        )
