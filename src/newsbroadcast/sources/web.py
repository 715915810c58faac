"""Polite HTTP for sources that crawl web pages (html listings, sitemaps, article pages).

``PoliteFetcher`` names us with a User-Agent, obeys robots.txt (RFC 9309, through
``urllib.robotparser``), waits a delay between two requests to one host (the larger of the
source's ``delay`` and the site's ``Crawl-delay``), makes conditional GETs, and caps the
size of what it reads. Every failure becomes a ``SourceError`` naming the URL.
"""

from __future__ import annotations

import threading
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from newsbroadcast.errors import RobotsDisallowed, SourceError

__all__ = ["MAX_PAGE_BYTES", "Page", "PoliteFetcher", "RobotsDisallowed"]

# Far above any real listing page or sitemap (Google caps sitemaps at 50 MB uncompressed).
MAX_PAGE_BYTES = 50 * 1024 * 1024

# When each host was last asked, for every source in this process: two sources on one
# site share its delay.
_last_request: dict[str, float] = {}
_host_lock = threading.Lock()


@dataclass(frozen=True)
class Page:
    url: str  # after redirects: the base of relative links
    data: bytes
    media_type: str = ""
    charset: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False


class PoliteFetcher:
    """One source's polite HTTP for one poll. Cheap; make one per poll (robots.txt is
    read once per host per poll)."""

    def __init__(
        self,
        source: str,
        client: httpx.Client | None,
        user_agent: str,
        timeout: float,
        delay: float,
        *,
        robots: bool = True,
    ) -> None:
        self.source = source
        self.robots = robots  # False only for a page a person asked for by hand
        self.user_agent = user_agent
        self.timeout = timeout
        self.delay = delay
        self._own_client = client is None
        self._http = client or httpx.Client()
        self._robots: dict[str, RobotFileParser] = {}

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> PoliteFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- robots.txt -----------------------------------------------------------------------

    def allowed(self, url: str) -> bool:
        return not self.robots or self._robots_for(url).can_fetch(self.user_agent, url)

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
        try:
            self._wait_turn(origin)
            response = self._http.get(
                origin + "/robots.txt",
                headers={"User-Agent": self.user_agent},
                timeout=self.timeout,
                follow_redirects=True,
            )
        except httpx.HTTPError:
            # RFC 9309 2.3.1.4: an unreachable robots.txt means "assume complete disallow".
            robots.disallow_all = True
            return robots
        if response.status_code >= 500:
            robots.disallow_all = True
        elif response.status_code >= 400:
            robots.allow_all = True  # RFC 9309 2.3.1.3: none published, all allowed
        else:
            robots.parse(response.content[:500_000].decode("utf-8", "replace").splitlines())
        return robots

    def _crawl_delay(self, url: str) -> float:
        parts = urlsplit(url)
        robots = self._robots.get(f"{parts.scheme}://{parts.netloc}")
        asked = robots.crawl_delay(self.user_agent) if robots else None
        return max(self.delay, float(asked or 0))

    def _wait_turn(self, url: str, delay: float | None = None) -> None:
        host = urlsplit(url).netloc.lower()
        pause = self.delay if delay is None else delay
        with _host_lock:
            now = time.monotonic()
            start = max(now, _last_request.get(host, 0.0) + pause)
            _last_request[host] = start  # reserve the slot before sleeping
        if start > now:
            time.sleep(start - now)

    # -- pages ----------------------------------------------------------------------------

    def get(
        self,
        url: str,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
    ) -> Page:
        """GET ``url`` if robots.txt allows it (else ``RobotsDisallowed``), conditionally when
        validators are given. Non-2xx answers and network failures raise ``SourceError``."""
        if not self.allowed(url):
            raise RobotsDisallowed(
                self.source, f"{url}: robots.txt of this site asks us not to fetch it"
            )
        headers = {"User-Agent": self.user_agent, "Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(url, self._crawl_delay(url))
        try:
            with self._http.stream(
                "GET", url, headers=headers, timeout=self.timeout, follow_redirects=True
            ) as response:
                if response.status_code == 304:
                    return Page(
                        url,
                        b"",
                        etag=response.headers.get("etag") or etag,
                        last_modified=response.headers.get("last-modified") or last_modified,
                        not_modified=True,
                    )
                if not 200 <= response.status_code < 300:
                    raise SourceError(
                        self.source,
                        f"{url}: HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                    )
                data = self._read(url, response)
                media_type, _, params = response.headers.get("content-type", "").partition(";")
                charset = None
                for param in params.split(";"):
                    key, _, value = param.partition("=")
                    if key.strip().lower() == "charset":
                        charset = value.strip().strip("\"'") or None
                return Page(
                    url=str(response.url),
                    data=data,
                    media_type=media_type.strip().lower(),
                    charset=charset,
                    etag=response.headers.get("etag"),
                    last_modified=response.headers.get("last-modified"),
                )
        except httpx.TimeoutException as e:
            raise SourceError(self.source, f"{url}: no answer within {self.timeout:g}s") from e
        except httpx.ConnectError as e:
            raise SourceError(self.source, f"{url}: cannot connect ({e})") from e
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise SourceError(self.source, f"{url}: {type(e).__name__}: {e}") from e

    def _read(self, url: str, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + 3 * self.timeout  # a trickling server is cut off too
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_PAGE_BYTES:
                raise SourceError(self.source, f"{url}: more than {MAX_PAGE_BYTES:,} bytes")
            if time.monotonic() > deadline:
                raise SourceError(self.source, f"{url}: still downloading after the timeout")
            chunks.append(chunk)
        data = b"".join(chunks)
        if data[:2] == b"\x1f\x8b":  # a .xml.gz sitemap served as a file, not as an encoding
            data = _gunzip(self.source, url, data)
        return data


def _gunzip(source: str, url: str, data: bytes) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(data, MAX_PAGE_BYTES + 1)
    except zlib.error as e:
        raise SourceError(source, f"{url}: broken gzip data ({e})") from e
    if len(out) > MAX_PAGE_BYTES:
        raise SourceError(source, f"{url}: more than {MAX_PAGE_BYTES:,} bytes uncompressed")
    return out
