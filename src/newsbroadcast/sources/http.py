"""The one HTTP fetcher of every source: feeds, html listings and article pages, sitemaps,
robots.txt and ``articles add``.

``Fetcher.get`` makes one GET (conditional when validators are given) with one overall
deadline covering connect, the status line and headers, redirects and the whole body: the
source's ``timeout``. It names us with a User-Agent, caps the size of what it reads (after
decompression, so a gzip bomb stops too), unpacks a gzip body served as a file, and, for
crawlers (``robots=True``), obeys robots.txt (RFC 9309) and waits a delay between two
requests to one host (the larger of the source's ``delay`` and the site's ``Crawl-delay``).
Every failure becomes a ``SourceError`` naming the URL, with one wording for all sources.

httpx's timeouts count per socket operation: a server that sends a byte a second never
trips them. The deadline is therefore enforced by us, twice: a client from
``make_client()`` gives every socket operation only what is left of the request's budget
(so a trickled status line or header is cut off too), and the body is checked against the
deadline between chunks whichever client is used.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from newsbroadcast import __version__
from newsbroadcast.errors import RobotsDisallowed, SourceError

__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_BYTES",
    "Fetcher",
    "Page",
    "RobotsDisallowed",
    "gunzip",
    "make_client",
]

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"newsbroadcast/{__version__}"
# Far above any real feed, listing page or sitemap (Google caps sitemaps at 50 MB
# uncompressed); stops a misconfigured URL (a video, an endless stream) from filling memory.
MAX_BYTES = 50 * 1024 * 1024
_MAX_ROBOTS_BYTES = 500_000  # RFC 9309 2.5: at least 500 KiB must be parsed
_HTML_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

# When each host was last asked, for every source in this process: two sources on one
# site share its delay, also when they are polled at the same time.
_last_request: dict[str, float] = {}
_host_lock = threading.Lock()

# The monotonic deadline of the request this thread is making (None: no request).
_deadline: ContextVar[float | None] = ContextVar("newsbroadcast_http_deadline", default=None)


@dataclass(frozen=True)
class Page:
    """A response's body and what the server said about it."""

    url: str  # after redirects: the base of relative links
    data: bytes
    media_type: str = ""  # lower-case, without parameters
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


# --- the deadline at the socket --------------------------------------------------------------


def _budget(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout``, shortened to what is left of the current request's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's overall deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context,
            server_hostname,
            _budget(timeout, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each operation bounded by the request's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host,
            port,
            _budget(timeout, httpcore.ConnectTimeout),
            local_address,
            socket_options,
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(
            path,
            _budget(timeout, httpcore.ConnectTimeout),
            socket_options,
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def make_client() -> httpx.Client:
    """A client whose every socket operation respects ``Fetcher``'s overall deadline. It is
    safe to share between threads (one per source polled at once)."""
    transport = httpx.HTTPTransport()
    # httpx offers no public way to hand httpcore a network backend; its transport is a thin
    # shell around this pool, so the pool is replaced by one like it with our backend.
    if not isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        raise RuntimeError("this httpx version keeps no httpcore pool: update sources/http.py")
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_DeadlineBackend()
    )
    return httpx.Client(transport=transport)


@contextmanager
def _within(seconds: float) -> Iterator[float]:
    """Run a request with a deadline ``seconds`` from now; yields the deadline."""
    deadline = time.monotonic() + seconds
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


# --- the fetcher -----------------------------------------------------------------------------


class Fetcher:
    """One source's HTTP for one poll. Cheap; make one per poll (robots.txt is read once per
    host per poll). ``robots`` is for crawlers (html listings, sitemaps): feeds are published
    for machines, and a page a person asked for by hand is not crawling."""

    def __init__(
        self,
        source: str,
        client: httpx.Client | None,
        user_agent: str | None,
        timeout: float,
        *,
        delay: float = 0.0,
        robots: bool = False,
    ) -> None:
        self.source = source
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.timeout = timeout
        self.delay = delay
        self.robots = robots
        self._own_client = client is None
        self._http = client or make_client()
        self._robots: dict[str, RobotFileParser] = {}

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(
        self,
        url: str,
        etag: str | None = None,
        last_modified: str | None = None,
        *,
        accept: str = _HTML_ACCEPT,
        what: str = "page",
    ) -> Page:
        """GET ``url``, conditionally when validators are given (a 304 gives a Page with
        ``not_modified``). ``what`` names the document in messages ("feed", "sitemap").
        Raises ``RobotsDisallowed`` when robots.txt forbids the URL, and ``SourceError`` for
        every other failure (network, status, size, deadline)."""
        if self.robots and not self._robots_for(url).can_fetch(self.user_agent, url):
            raise RobotsDisallowed(
                self.source, f"{url}: robots.txt of this site asks us not to fetch it"
            )
        headers = {"User-Agent": self.user_agent, "Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(url, self._crawl_delay(url))
        page = self._fetch(url, headers, MAX_BYTES, what)
        if page.not_modified:
            # A 304 may repeat or refresh the validators; keep ours when it does not.
            return Page(
                page.url,
                b"",
                etag=page.etag or etag,
                last_modified=page.last_modified or last_modified,
                not_modified=True,
            )
        return page

    # -- one request under one deadline ---------------------------------------------------

    def _fetch(self, url: str, headers: dict[str, str], cap: int, what: str) -> Page:
        seconds = self.timeout
        started_body = False
        try:
            with (
                _within(seconds) as deadline,
                self._http.stream(
                    "GET",
                    url,
                    headers=headers,
                    timeout=httpx.Timeout(seconds),
                    follow_redirects=True,
                ) as response,
            ):
                if response.status_code == 304:
                    return Page(
                        str(response.url),
                        b"",
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                        not_modified=True,
                    )
                _check_status(self.source, url, response, what)
                _note_permanent_redirect(self.source, url, response)
                started_body = True
                data = _read_body(self.source, url, response, cap, deadline, seconds)
                media_type, charset = _content_type(response.headers.get("content-type", ""))
                return Page(
                    url=str(response.url),
                    data=data,
                    media_type=media_type,
                    charset=charset,
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )
        except httpx.TimeoutException as e:
            raise SourceError(self.source, _too_slow(url, seconds, started_body)) from e
        except httpx.ConnectError as e:
            raise SourceError(
                self.source,
                f"{url}: cannot connect ({e or 'connection failed'}); "
                "check the host name and that the server is up",
            ) from e
        except httpx.TooManyRedirects as e:
            raise SourceError(self.source, f"{url}: too many redirects (a redirect loop?)") from e
        except httpx.DecodingError as e:
            raise SourceError(
                self.source, f"{url}: the response could not be decompressed ({e})"
            ) from e
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise SourceError(self.source, f"{url}: {type(e).__name__}: {e}") from e

    # -- politeness -----------------------------------------------------------------------

    def _robots_for(self, url: str) -> RobotFileParser:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        robots = self._robots.get(origin)
        if robots is None:
            robots = self._read_robots(origin)
            self._robots[origin] = robots
        return robots

    def _read_robots(self, origin: str) -> RobotFileParser:
        robots = RobotFileParser(origin + "/robots.txt")
        self._wait_turn(origin, self.delay)
        headers = {"User-Agent": self.user_agent, "Accept": "text/plain"}
        try:
            page = self._fetch(origin + "/robots.txt", headers, MAX_BYTES, "robots.txt")
        except SourceError as e:
            status = _status_of(e)
            if status is not None and 400 <= status < 500:
                # RFC 9309 2.3.1.3: none published, all allowed. (typeshed leaves out the
                # two flags RobotFileParser.read itself sets for these cases.)
                robots.allow_all = True  # type: ignore[attr-defined]
            else:
                # RFC 9309 2.3.1.4: an unreachable robots.txt means "assume complete disallow".
                robots.disallow_all = True  # type: ignore[attr-defined]
            return robots
        text = page.data[:_MAX_ROBOTS_BYTES].decode("utf-8", "replace")
        robots.parse(text.splitlines())
        return robots

    def _crawl_delay(self, url: str) -> float:
        parts = urlsplit(url)
        robots = self._robots.get(f"{parts.scheme}://{parts.netloc}")
        asked = robots.crawl_delay(self.user_agent) if robots else None
        return max(self.delay, float(asked or 0))

    def _wait_turn(self, url: str, pause: float) -> None:
        if pause <= 0:
            return
        host = urlsplit(url).netloc.lower()
        with _host_lock:
            now = time.monotonic()
            start = max(now, _last_request.get(host, 0.0) + pause)
            _last_request[host] = start  # reserve the slot before sleeping
        if start > now:
            time.sleep(start - now)


class _StatusError(SourceError):
    """A non-2xx answer; ``status`` lets robots.txt tell "none published" from "down"."""

    def __init__(self, source: str, message: str, status: int) -> None:
        super().__init__(source, message)
        self.status = status


def _status_of(e: SourceError) -> int | None:
    return e.status if isinstance(e, _StatusError) else None


def _check_status(source: str, url: str, response: httpx.Response, what: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status in (401, 403):
        hint = "the server refuses us (a login is needed, or it blocks unknown clients)"
    elif status in (404, 410):
        hint = f"there is no {what} at this address; check the url"
    elif status == 429:
        after = response.headers.get("retry-after")
        hint = "the server says we ask too often; raise poll_every" + (
            f" (it asks us to wait {after}s)" if after and after.isdigit() else ""
        )
    elif status >= 500:
        hint = "the server failed; the next poll tries again"
    elif 300 <= status < 400:
        hint = "a redirect without a usable Location header"
    else:
        hint = "the request was refused"
    raise _StatusError(source, f"{url}: {reason}: {hint}", status)


def _note_permanent_redirect(source: str, url: str, response: httpx.Response) -> None:
    # Following is automatic, but the config should be fixed before the old address dies.
    if response.history and response.history[0].status_code in (301, 308):
        log.warning(
            "source %r: %s has moved permanently to %s; update its url", source, url, response.url
        )


def _read_body(
    source: str, url: str, response: httpx.Response, cap: int, deadline: float, seconds: float
) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise SourceError(
            source, f"{url}: the response is {int(declared):,} bytes, more than the {cap:,} we read"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():  # decompressed: the cap also stops gzip bombs
        size += len(chunk)
        if size > cap:
            raise SourceError(source, f"{url}: the response is more than {cap:,} bytes")
        if time.monotonic() > deadline:  # also when the client is not one of make_client()'s
            raise SourceError(source, _too_slow(url, seconds, body=True))
        chunks.append(chunk)
    data = b"".join(chunks)
    if data[:2] == b"\x1f\x8b":  # a .xml.gz served as a file, not as a Content-Encoding
        data = gunzip(source, url, data)
    return data


def _too_slow(url: str, seconds: float, body: bool) -> str:
    phase = "the answer did not finish" if body else "no answer"
    return (
        f"{url}: {phase} within {seconds:g}s (the source's timeout covers connecting, "
        "the headers and the whole body); the server is down or too slow (raise the "
        "source's timeout if it is only slow)"
    )


def _content_type(value: str) -> tuple[str, str | None]:
    """'Text/XML; Charset="UTF-8"' → ('text/xml', 'UTF-8')."""
    media_type, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip("\"'"):
            charset = val.strip().strip("\"'")
    return media_type.strip().lower(), charset


def gunzip(source: str, where: str, data: bytes) -> bytes:
    """Unpack gzip ``data`` (a .gz file, or a server that compressed twice), capped at
    ``MAX_BYTES``. Raises ``SourceError`` naming ``where``."""
    inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        out = inflate.decompress(data, MAX_BYTES)
    except zlib.error as e:
        raise SourceError(source, f"{where}: looks gzip-compressed but is corrupt ({e})") from e
    if inflate.unconsumed_tail:
        raise SourceError(
            source, f"{where}: more than {MAX_BYTES:,} bytes once decompressed (the right url?)"
        )
    return out
