"""Feed sources: RSS 2.0, RSS 1.0 (RDF), Atom and JSON Feed, from a file or over HTTP.

``fetch_feed`` is the one entry point. It reads the bytes (a conditional GET for http(s)
URLs), parses them with feedparser (or ``json`` for JSON Feed, which feedparser does not
read) and maps each entry to an ``ArticleDraft``. Anything that stops a whole feed from
being read raises ``SourceError`` with the URL or path and a hint; a single unusable entry
is only listed in ``FetchResult.skipped``.
"""

from __future__ import annotations

import codecs
import hashlib
import html
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import feedparser
import httpx

from newsbroadcast.config.model import FeedSource
from newsbroadcast.errors import SourceError
from newsbroadcast.sources.base import ArticleDraft, FetchResult
from newsbroadcast.sources.http import DEFAULT_USER_AGENT, MAX_BYTES, Fetcher, gunzip
from newsbroadcast.sources.language import language_tag

__all__ = ["DEFAULT_USER_AGENT", "fetch_feed"]

log = logging.getLogger(__name__)

_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.9, text/xml;q=0.9, "
    "application/json;q=0.8, */*;q=0.5"
)
_FEED_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/feed+json",
    "application/json",
    "application/xml",
    "text/xml",
}
_JSONFEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/", re.IGNORECASE)
# Two characters at least, so a Windows drive letter ("C:\feeds") is not taken for a scheme.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|avif)(?:$|[?#])", re.IGNORECASE)
_TITLE_FROM_TEXT = 100  # characters of the summary used when an entry has no title


@dataclass(frozen=True)
class _Document:
    """The raw bytes of a feed and what the transport told us about them."""

    data: bytes
    where: str  # the URL or absolute path, for messages
    media_type: str = ""  # lower-case, without parameters; "" when unknown (files)
    charset: str | None = None
    base_url: str | None = None  # final http(s) URL after redirects: base of relative links
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


def fetch_feed(
    source: FeedSource,
    base_dir: Path,
    etag: str | None,
    last_modified: str | None,
    client: httpx.Client | None = None,
    *,
    user_agent: str | None = None,
) -> FetchResult:
    """Read ``source`` and return its entries as drafts.

    ``source.url`` is an http(s) URL, a ``file://`` URL or a path (relative paths are
    resolved against ``base_dir``). For http(s), ``etag``/``last_modified`` from the previous
    poll make the request conditional; a 304 gives ``not_modified=True`` and no drafts. The
    returned validators are the ones to store for the next poll. ``user_agent`` should name
    the operator, e.g. ``newsbroadcast/0.1.0 (+https://newsroom.example.org)``.

    Raises ``SourceError`` when the feed cannot be fetched or holds nothing readable.
    """
    url = source.url.strip()
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "feed":  # the old feed:// and feed:https://… pseudo-schemes
        url = url[5:] if url[5:].lower().startswith(("http:", "https:")) else "http:" + url[5:]
        scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        doc = _download(source, url, etag, last_modified, client, user_agent)
        if doc.not_modified:
            return FetchResult(not_modified=True, etag=doc.etag, last_modified=doc.last_modified)
    elif scheme == "file":
        doc = _read_file(source.name, _file_url_path(source.name, url))
    elif scheme:
        raise SourceError(
            source.name,
            f"{url}: unsupported URL scheme {scheme!r} "
            "(use an http(s) URL, a file:// URL or a file path)",
        )
    else:
        path = Path(url).expanduser()
        doc = _read_file(source.name, path if path.is_absolute() else base_dir / path)
    drafts, skipped = _parse(source.name, doc)
    return FetchResult(
        drafts=drafts, etag=doc.etag, last_modified=doc.last_modified, skipped=skipped
    )


# --- reading bytes -----------------------------------------------------------------------


def _download(
    source: FeedSource,
    url: str,
    etag: str | None,
    last_modified: str | None,
    client: httpx.Client | None,
    user_agent: str | None,
) -> _Document:
    """GET ``url`` (conditionally) through the one fetcher. Every failure is a SourceError."""
    with Fetcher(source.name, client, user_agent, source.timeout.total_seconds()) as fetcher:
        page = fetcher.get(url, etag, last_modified, accept=_ACCEPT, what="feed")
    if page.not_modified:
        return _Document(
            b"", url, not_modified=True, etag=page.etag, last_modified=page.last_modified
        )
    return _Document(
        data=page.data,
        where=url,
        media_type=page.media_type,
        charset=page.charset,
        base_url=page.url,
        etag=page.etag,
        last_modified=page.last_modified,
    )


def _file_url_path(name: str, url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(
            name, f"{url}: a file:// URL must name a local file (file:///path/to/feed.xml)"
        )
    return Path(url2pathname(unquote(parts.path)))


def _read_file(name: str, path: Path) -> _Document:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise SourceError(
                name, f"{path}: {size:,} bytes, more than the {MAX_BYTES:,} a feed may have"
            )
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise SourceError(
            name,
            f"{path}: no such file (a relative url is resolved against the configuration's root)",
        ) from e
    except IsADirectoryError as e:
        raise SourceError(name, f"{path}: is a directory, not a feed file") from e
    except PermissionError as e:
        raise SourceError(name, f"{path}: permission denied") from e
    except OSError as e:
        raise SourceError(name, f"{path}: cannot be read ({e.strerror or e})") from e
    return _Document(data=data, where=str(path))


# --- parsing ------------------------------------------------------------------------------


def _parse(name: str, doc: _Document) -> tuple[list[ArticleDraft], list[str]]:
    if doc.data[:2] == b"\x1f\x8b":
        doc = replace(doc, data=gunzip(name, doc.where, doc.data))
    if not doc.data.strip():
        raise SourceError(
            name, f"{doc.where}: empty {'response' if doc.base_url else 'file'}, not a feed"
        )
    json_feed = _load_json_feed(name, doc)
    if json_feed is not None:
        return _dedupe_guids(*_json_feed_drafts(name, doc, json_feed))

    parsed = _feedparse(name, doc, doc.base_url)
    if not doc.base_url:
        # A file has no URL for relative links (in <link> and inside the HTML) to resolve
        # against; the channel's own link is the next best base. Parsing twice is cheap.
        site = _absolute((parsed.get("feed") or {}).get("link"), None)
        if site:
            parsed = _feedparse(name, doc, site)

    entries = parsed.get("entries") or []
    if not parsed.get("version") and not entries:
        raise SourceError(name, _not_a_feed(doc, parsed.get("bozo_exception")))
    drafts, skipped = _dedupe_guids(*_feedparser_drafts(parsed, doc.base_url))
    if parsed.get("bozo") and not drafts:
        problem = parsed.get("bozo_exception")
        raise SourceError(
            name,
            f"{doc.where}: the feed is broken and no entry could be read "
            f"({problem or 'malformed document'}); check it in a feed validator "
            "such as https://validator.w3.org/feed/",
        )
    if parsed.get("bozo"):
        log.info(
            "source %r: %s is not well-formed (%s); read %d entries anyway",
            name,
            doc.where,
            parsed.get("bozo_exception"),
            len(drafts),
        )
    return drafts, skipped


def _feedparse(name: str, doc: _Document, base: str | None) -> Mapping[str, Any]:
    headers = {"content-type": "application/xml"}
    charset = _trusted_charset(doc.charset, doc.data)
    if charset:
        headers["content-type"] += f"; charset={charset}"
    if base:
        headers["content-location"] = base
    try:
        # Bytes go in a BytesIO: given bytes or str, feedparser may treat them as a file
        # name or URL to open. HTML is kept as published: it is sanitised at render time.
        return feedparser.parse(io.BytesIO(doc.data), response_headers=headers, sanitize_html=False)
    except Exception as e:  # feedparser is lenient, but a crash must not stop other sources
        raise SourceError(name, f"{doc.where}: the feed parser failed ({e!r})") from e


def _trusted_charset(charset: str | None, data: bytes) -> str | None:
    """The HTTP charset, unless the bytes show it is wrong.

    Many servers label every response ``charset=ISO-8859-1`` (an old Apache default) while
    the feed is UTF-8; single-byte charsets decode anything, so obeying the header silently
    turns every accented letter into mojibake. Non-ASCII bytes that are valid UTF-8 are
    almost never a single-byte encoding, so then the document's own declaration wins.
    """
    if not charset:
        return None
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        return None  # an unknown label: let the document declare its encoding
    if codec != "utf-8" and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return charset
        return None
    return charset


def _not_a_feed(doc: _Document, problem: object) -> str:
    head = doc.data[:1024].lstrip().lower()
    if doc.media_type in ("text/html", "application/xhtml+xml") or head.startswith(
        (b"<!doctype html", b"<html")
    ):
        page = _scan_html(doc.data.decode(doc.charset or "utf-8", "replace"))
        found = [u for u in (_absolute(h, doc.base_url) for h in page.feeds) if u]
        hint = (
            f"; the page points to a feed at {found[0]}: use that as the url"
            if found
            else "; set the url to the feed itself, not to the web page"
        )
        return f"{doc.where}: this is an HTML page, not a feed{hint}"
    what = f" (served as {doc.media_type})" if doc.media_type else ""
    detail = f": {problem}" if problem else ""
    return f"{doc.where}: not an RSS, Atom or JSON feed{what}{detail}"


def _feedparser_drafts(
    parsed: Mapping[str, Any], base_url: str | None
) -> tuple[list[ArticleDraft], list[str]]:
    feed = parsed.get("feed") or {}
    # feedparser already resolved links against xml:base and the document's URL; what is
    # still relative (a local file has no URL) is resolved against the channel's own link.
    site = _absolute(feed.get("link"), base_url) or base_url
    # Atom entries inherit the feed's author; RSS has no such rule.
    atom = str(parsed.get("version", "")).startswith("atom")
    feed_authors = _names(feed.get("authors")) if atom else None
    feed_language = language_tag(feed.get("language"))
    return _collect(
        parsed.get("entries") or [],
        lambda entry: _draft_from_entry(entry, site, feed_authors, feed_language),
    )


def _entry_language(entry: Mapping[str, Any], feed_language: str | None) -> str | None:
    """The entry's own ``dc:language``, else the ``xml:lang`` of its text (Atom), else the
    feed's ``<language>`` (RSS) or ``xml:lang``."""
    details = [entry.get("title_detail"), entry.get("summary_detail"), *entry.get("content", [])]
    candidates = [entry.get("language")] + [(d or {}).get("language") for d in details]
    found = (language_tag(c) for c in candidates if isinstance(c, str))
    return next((tag for tag in found if tag), feed_language)


def _draft_from_entry(
    entry: Mapping[str, Any],
    site: str | None,
    feed_authors: str | None,
    feed_language: str | None = None,
) -> ArticleDraft | str:
    url = _absolute(entry.get("link"), site)
    title = entry.get("title") or ""
    if (entry.get("title_detail") or {}).get("type") in ("text/html", "application/xhtml+xml"):
        title = _scan_html(title).text
    title = _one_line(title)
    if not title and not url:
        return "no title and no link"
    body = _best_content(entry.get("content") or [])
    detail = entry.get("summary_detail")
    # Without a summary of its own, feedparser lends the content (untyped): use ours.
    summary = _as_html(detail, entry.get("summary") or "") if detail else body
    if not title:
        title = _excerpt(summary or body) or url or ""
    stamp = (
        entry.get("published_parsed") or entry.get("updated_parsed") or entry.get("created_parsed")
    )
    date_text = entry.get("published") or entry.get("updated") or ""
    return ArticleDraft(
        guid=_one_line(entry.get("id") or "") or url or _hash_guid(title, date_text),
        title=title,
        url=url,
        summary=summary,
        body=body,
        image=_entry_image(entry, site),
        author=_names(entry.get("authors"))
        or _one_line(entry.get("author") or "")
        or feed_authors
        or None,
        tags=_unique(t.get("term") or t.get("label") for t in entry.get("tags") or []),
        published_at=_from_struct(stamp),
        language=_entry_language(entry, feed_language),
    )


def _collect(
    entries: Iterable[Any], to_draft: Callable[[Any], ArticleDraft | str]
) -> tuple[list[ArticleDraft], list[str]]:
    """Drafts, and "entry N: why" for each entry (numbered from 1) that gave none."""
    drafts: list[ArticleDraft] = []
    skipped: list[str] = []
    for number, entry in enumerate(entries, start=1):
        try:
            outcome = to_draft(entry)
        except Exception as e:  # one entry of an unexpected shape must not cost the feed
            outcome = f"could not be read ({e!r})"
        if isinstance(outcome, str):
            skipped.append(f"entry {number}: {outcome}")
        else:
            drafts.append(outcome)
    return drafts, skipped


def _best_content(contents: list[Mapping[str, Any]]) -> str:
    """Atom may offer alternatives (text and HTML): prefer the HTML one."""
    for content in contents:
        if content.get("type") in ("text/html", "application/xhtml+xml") and content.get("value"):
            return str(content["value"])
    return next((_as_html(c, str(c["value"])) for c in contents if c.get("value")), "")


def _as_html(detail: Mapping[str, Any], value: str) -> str:
    """Drafts carry HTML; Atom's type="text" is plain text, where "<" means a "<"."""
    return _text_to_html(value) if detail.get("type") == "text/plain" else value


def _entry_image(entry: Mapping[str, Any], base: str | None) -> str | None:
    """The picture the feed declares for the entry: media:content (an image), an image
    enclosure, media:thumbnail, itunes:image; the first that is an http(s) URL. Never an
    <img> of the story's HTML: that may be an icon, a tracking pixel or a broken
    `<img src=x onerror=…>`, and it is not what the newsroom chose to show."""
    candidates: list[str | None] = []
    for media in entry.get("media_content") or []:
        kind = media.get("medium") or media.get("type") or ""
        if (
            kind == "image"
            or kind.startswith("image/")
            or (not kind and _IMAGE_EXT.search(media.get("url") or ""))
        ):
            candidates.append(media.get("url"))
    for link in [*(entry.get("links") or []), *(entry.get("enclosures") or [])]:
        if link.get("rel", "enclosure") == "enclosure" and (
            (link.get("type") or "").startswith("image/")
            or (not link.get("type") and _IMAGE_EXT.search(link.get("href") or ""))
        ):
            candidates.append(link.get("href"))
    # A thumbnail is often small: only when no full-size picture is declared.
    candidates += [t.get("url") for t in entry.get("media_thumbnail") or []]
    itunes = entry.get("image")
    if isinstance(itunes, Mapping):
        candidates.append(itunes.get("href") or itunes.get("url"))
    return next((u for u in (_absolute(c, base) for c in candidates) if u), None)


# --- JSON Feed ----------------------------------------------------------------------------


def _load_json_feed(name: str, doc: _Document) -> dict[str, Any] | None:
    """The JSON Feed object, or None when the document is not JSON (then it is XML)."""
    json_type = doc.media_type in ("application/feed+json", "application/json") or (
        doc.media_type.endswith("+json")
    )
    if not json_type and not doc.data.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"{"):
        return None
    try:
        try:
            obj = json.loads(doc.data)  # detects UTF-8/16/32 and a BOM by itself
        except UnicodeDecodeError:  # a stray Latin-1 byte should cost one letter, not a feed
            obj = json.loads(doc.data.decode("utf-8", "replace"))
    except (ValueError, RecursionError) as e:
        if json_type:
            raise SourceError(
                name, f"{doc.where}: served as {doc.media_type} but the JSON is broken ({e})"
            ) from e
        return None
    if isinstance(obj, dict) and (
        _JSONFEED_VERSION.match(str(obj.get("version") or ""))
        # Some generators forget "version"; served as JSON with an items list is enough.
        or (json_type and isinstance(obj.get("items"), list))
    ):
        return obj
    raise SourceError(
        name,
        f'{doc.where}: JSON, but not a JSON Feed (no "version": '
        '"https://jsonfeed.org/version/1.1" and "items")',
    )


def _json_feed_drafts(
    name: str, doc: _Document, feed: dict[str, Any]
) -> tuple[list[ArticleDraft], list[str]]:
    items = feed.get("items")
    if not isinstance(items, list):
        raise SourceError(name, f'{doc.where}: the JSON Feed has no "items" list')
    site = _absolute(_str(feed.get("home_page_url")), doc.base_url)
    base = doc.base_url or site or _absolute(_str(feed.get("feed_url")), None)
    feed_authors = _json_authors(feed)
    language = language_tag(_str(feed.get("language")))  # JSON Feed 1.1: the feed's only
    return _collect(items, lambda item: _draft_from_item(item, base, feed_authors, language))


def _draft_from_item(
    item: object, base: str | None, feed_authors: str | None, language: str | None = None
) -> ArticleDraft | str:
    if not isinstance(item, dict):
        return "not a JSON object"
    url = _absolute(_str(item.get("url")), base) or _absolute(_str(item.get("external_url")), base)
    title = _one_line(_str(item.get("title")))
    if not title and not url:
        return "no title and no link"
    # ArticleDraft's summary and body hold HTML: JSON Feed's *_text fields are plain.
    body = _str(item.get("content_html")) or _text_to_html(_str(item.get("content_text")))
    summary = _text_to_html(_str(item.get("summary"))) or body
    if not title:
        title = _excerpt(summary) or url or ""
    item_id = item.get("id")  # a string by the spec; numbers are common in the wild
    guid = (
        _one_line(str(item_id))
        if isinstance(item_id, str | int) and not isinstance(item_id, bool)
        else ""
    )
    date_text = _str(item.get("date_published")) or _str(item.get("date_modified"))
    images = [_str(item.get("image")), _str(item.get("banner_image"))]
    images += [
        _str(a.get("url"))
        for a in _list(item.get("attachments"))
        if isinstance(a, dict) and _str(a.get("mime_type")).startswith("image/")
    ]
    return ArticleDraft(
        guid=guid or url or _hash_guid(title, date_text),
        title=title,
        url=url,
        summary=summary,
        body=body,
        image=next((u for u in (_absolute(i, base) for i in images) if u), None),
        author=_json_authors(item) or feed_authors,
        tags=_unique(_list(item.get("tags"))),
        published_at=_from_text(date_text),
        language=language,
    )


def _json_authors(obj: dict[str, Any]) -> str | None:
    """1.1's "authors" list, or 1.0's single "author"."""
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")]
    return _names(a for a in authors if isinstance(a, dict))


# --- small helpers ------------------------------------------------------------------------


def _dedupe_guids(
    drafts: list[ArticleDraft], skipped: list[str]
) -> tuple[list[ArticleDraft], list[str]]:
    """Give entries that share a GUID but link to different pages their link as GUID.

    Some CMSs put the same GUID (often the home page) on every item; taken literally, the
    whole feed would collapse into one story. One story listed twice (same GUID, same link)
    is left alone: the store keeps it once.
    """
    links: dict[str, set[str | None]] = {}
    for draft in drafts:
        links.setdefault(draft.guid, set()).add(draft.url)
    return [
        replace(d, guid=d.url) if d.url and len(links[d.guid]) > 1 else d for d in drafts
    ], skipped


def _absolute(url: object, base: str | None) -> str | None:
    """An absolute http(s) URL, or None (javascript:, mailto:, data: and junk are dropped)."""
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    try:
        if url.startswith("//") and not base:
            url = "https:" + url
        elif base:
            url = urljoin(base, url)
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _one_line(text: str) -> str:
    """Titles are one line: CR/LF and runs of spaces become one space, controls go."""
    return re.sub(r"\s+", " ", _CONTROL.sub("", text)).strip()


def _excerpt(markup: str, limit: int = _TITLE_FROM_TEXT) -> str:
    text = _one_line(_scan_html(markup).text) if markup else ""
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
    return cut.rstrip(" ,;:.-") + "…"


def _text_to_html(text: str) -> str:
    if not text.strip():
        return ""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n".join(
        "<p>" + html.escape(p.strip()).replace("\n", "<br>\n") + "</p>" for p in paragraphs
    )


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _names(people: Iterable[Mapping[str, Any]] | None) -> str | None:
    names = _unique(p.get("name") for p in people or [] if isinstance(p, Mapping))
    return ", ".join(names) or None


def _unique(values: Iterable[object]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and (clean := _one_line(value)):
            seen.setdefault(clean, None)
    return tuple(seen)


def _hash_guid(title: str, date_text: str) -> str:
    # Neither id nor link: title and date are all that identify the entry across polls.
    return "sha256:" + hashlib.sha256(f"{title}\n{date_text}".encode()).hexdigest()


def _from_struct(stamp: time.struct_time | None) -> datetime | None:
    """feedparser's dates are UTC struct_times."""
    if not stamp:
        return None
    try:
        return datetime(*stamp[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _from_text(text: str) -> datetime | None:
    """RFC 3339 as JSON Feed requires; RFC 822 as some generators write anyway."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            moment = parsedate_to_datetime(text.strip())
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:  # no offset given: UTC is the least surprising guess
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class _HtmlScan(HTMLParser):
    """Text and advertised feeds of a piece of HTML, however broken."""

    _BREAKS = {"p", "br", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.feeds: list[str] = []
        self._hidden = 0  # inside <script>/<style>: not text

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        if tag in ("script", "style"):
            self._hidden += 1
        elif (
            tag == "link"
            and "alternate" in attr.get("rel", "").lower().split()
            and attr.get("type", "").lower() in _FEED_TYPES
            and attr.get("href")
        ):
            self.feeds.append(attr["href"])
        elif tag in self._BREAKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _scan_html(markup: str) -> _HtmlScan:
    scan = _HtmlScan()
    try:
        scan.feed(markup)
        scan.close()
    except Exception:  # html.parser rarely gives up; what it read so far is enough
        pass
    return scan
