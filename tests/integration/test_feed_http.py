"""Polling over real HTTP: a loopback server with ETags, 304s, failures, redirects."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from newsbroadcast.articles.ingest import poll_all, poll_source
from newsbroadcast.config.model import Config
from newsbroadcast.db.engine import sessions
from newsbroadcast.db.models import Article, SourceState
from newsbroadcast.errors import InputError
from tests.site import site_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
NOW = datetime(2025, 5, 23, 12, 0, tzinfo=UTC)
ETAG = '"newsroom-v1"'
LAST_MODIFIED = "Fri, 23 May 2025 10:00:00 GMT"

Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FeedServer:
    """Serves ``routes`` on 127.0.0.1 and records every request's path and headers."""

    routes: dict[str, Callable[[dict[str, str]], Reply]]
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        return [headers for p, headers in self.requests if p == path]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    feed = (FIXTURES / "rss_newsroom.xml").read_bytes()

    def conditional_feed(headers: dict[str, str]) -> Reply:
        validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
        if headers.get("if-none-match") == ETAG:
            return 304, validators, b""
        return 200, {"Content-Type": "application/rss+xml", **validators}, feed

    def slow(headers: dict[str, str]) -> Reply:
        time.sleep(2)
        return 200, {"Content-Type": "application/rss+xml"}, feed

    utf8_feed = (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>x</title>"
        "<item><title>Café — Женщины — 女性</title><link>/news/charset</link></item>"
        "</channel></rss>"
    ).encode()
    json_feed = (
        (FIXTURES / "jsonfeed.json")
        .read_bytes()
        .replace(b'"https://newsroom.example.org/news/osce-central-asia"', b'"news/osce"')
    )
    fed = FeedServer(
        routes={
            "/feed.xml": conditional_feed,
            "/broken": lambda h: (500, {"Content-Type": "text/plain"}, b"oops"),
            "/gone": lambda h: (404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"),
            "/page.html": lambda h: (
                200,
                {"Content-Type": "text/html; charset=utf-8"},
                (FIXTURES / "not_a_feed.html").read_bytes(),
            ),
            "/slow": slow,
            "/moved": lambda h: (301, {"Location": "/feed.xml"}, b""),
            # A server that labels everything ISO-8859-1 although the feed is UTF-8.
            "/mislabelled.xml": lambda h: (
                200,
                {"Content-Type": "text/xml; charset=ISO-8859-1"},
                utf8_feed,
            ),
            "/feeds/feed.json": lambda h: (
                200,
                {"Content-Type": "application/feed+json"},
                json_feed,
            ),
        }
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            fed.requests.append((self.path, headers))
            route = fed.routes.get(self.path)
            status, reply_headers, body = route(headers) if route else (404, {}, b"")
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    fed.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fed
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@dataclass
class Trickler:
    """A server on 127.0.0.1 that sends its answer a byte at a time (every ``gap`` seconds):
    the status line and headers (``part="headers"``) or, after prompt headers, the body
    (``part="body"``). It stops when the client hangs up (``hung_up`` is then set) or when
    the whole answer is out, which takes far longer than any timeout in these tests."""

    part: str
    gap: float = 0.1
    hung_up: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def url(self, path: str = "/feed.xml") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self) -> tuple[bytes, bytes]:
        """(sent at once, trickled)."""
        feed = (FIXTURES / "rss_newsroom.xml").read_bytes()
        pad = b"X-Padding: " + b"." * 300 + b"\r\n"  # 30 s of headers at 0.1 s a byte
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
        head += f"Content-Length: {len(feed)}\r\n".encode()
        if self.part == "headers":
            return b"", head + pad + b"\r\n" + feed
        return head + b"\r\n", feed


@contextmanager
def trickling(part: str) -> Iterator[Trickler]:
    trickler = Trickler(part)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # the request's headers
            at_once, trickled = trickler.answer()
            try:
                self.wfile.write(at_once)
                for i in range(len(trickled)):
                    self.wfile.write(trickled[i : i + 1])
                    time.sleep(trickler.gap)
            except OSError:  # the client gave up and closed the connection
                trickler.hung_up.set()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    trickler.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield trickler
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(tmp_path: Path, sources: list[dict[str, Any]]) -> Config:
    return site_config(
        tmp_path,
        site={"public_url": "http://localhost:8000"},
        sources=[{"type": "feed", "timeout": "5s", **s} for s in sources],
        digests=None,
    )


def state(engine: Engine, name: str) -> SourceState | None:
    with sessions(engine)() as session:
        return session.get(SourceState, name)


def test_second_poll_is_conditional_and_not_modified(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, [{"name": "newsroom", "url": server.url("/feed.xml")}])
    source = config.sources[0]

    first = poll_source(sessions(engine), config, source, NOW)
    assert (first.new, first.error, first.not_modified) == (7, None, False)
    assert first.skipped == ["entry 8: no title and no link"]
    saved = state(engine, "newsroom")
    assert saved is not None
    assert (saved.etag, saved.last_modified, saved.items_seen) == (ETAG, LAST_MODIFIED, 8)

    later = NOW + timedelta(minutes=15)
    second = poll_source(sessions(engine), config, source, later)
    sent = server.requests_to("/feed.xml")[-1]
    assert sent["if-none-match"] == ETAG and sent["if-modified-since"] == LAST_MODIFIED
    assert sent["user-agent"].startswith("newsbroadcast/")
    assert sent["user-agent"].endswith("(+https://newsroom.example.org)")
    assert second.not_modified and second.new == 0 and second.error is None
    saved = state(engine, "newsroom")
    assert saved is not None
    assert (saved.etag, saved.last_modified, saved.items_seen) == (ETAG, LAST_MODIFIED, 8)
    assert saved.last_success_at == later and saved.last_error is None


def test_failing_sources_are_reported_while_the_others_are_ingested(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/feed.xml"
    config = make_config(
        tmp_path,
        [
            {"name": "down", "url": down},
            {"name": "broken", "url": server.url("/broken")},
            {"name": "page", "url": server.url("/page.html")},
            {"name": "gone", "url": server.url("/gone")},
            {"name": "newsroom", "url": server.url("/feed.xml")},
        ],
    )
    reports = {r.source: r for r in poll_all(sessions(engine), config, NOW)}

    assert reports["newsroom"].new == 7 and reports["newsroom"].error is None
    errors = {name: reports[name].error or "" for name in ("down", "broken", "page", "gone")}
    for name, error in errors.items():
        assert error.startswith(f"source {name!r}: http://127.0.0.1:"), error
    assert "cannot connect" in errors["down"] and down in errors["down"]
    assert "HTTP 500" in errors["broken"]
    assert "HTTP 404" in errors["gone"] and "there is no feed at this address" in errors["gone"]
    assert "HTML page, not a feed" in errors["page"]
    assert server.url("/feed.xml") in errors["page"]  # the page's <link rel=alternate>

    failed = state(engine, "down")
    assert failed is not None
    assert failed.last_error == errors["down"] and failed.last_polled_at == NOW
    assert failed.last_success_at is None
    with sessions(engine)() as session:
        assert {a.source for a in session.scalars(select(Article))} == {"newsroom"}


def test_a_server_that_does_not_answer_in_time(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path, [{"name": "slow", "url": server.url("/slow"), "timeout": "0.3s"}]
    )
    started = time.monotonic()
    (report,) = poll_all(sessions(engine), config, NOW)
    assert time.monotonic() - started < 1.5
    assert report.error and "no answer within 0.3s" in report.error


def test_redirects_are_followed_and_a_wrong_charset_header_is_overruled(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        [
            {"name": "moved", "url": server.url("/moved")},
            {"name": "mislabelled", "url": server.url("/mislabelled.xml")},
        ],
    )
    reports = poll_all(sessions(engine), config, NOW)
    assert [(r.new, r.error) for r in reports] == [(7, None), (1, None)]
    with sessions(engine)() as session:
        article = session.scalars(select(Article).where(Article.source == "mislabelled")).one()
    assert article.title == "Café — Женщины — 女性"
    # Relative links resolve against the URL the feed was fetched from.
    assert article.url == server.url("/news/charset")


def test_json_feed_over_http(engine: Engine, server: FeedServer, tmp_path: Path) -> None:
    config = make_config(tmp_path, [{"name": "json", "url": server.url("/feeds/feed.json")}])
    (report,) = poll_all(sessions(engine), config, NOW)
    assert (report.new, report.error) == (3, None)
    with sessions(engine)() as session:
        urls = set(session.scalars(select(Article.url)))
    assert server.url("/feeds/news/osce") in urls


def test_poll_all_can_be_limited_to_named_sources(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        [
            {"name": "newsroom", "url": server.url("/feed.xml")},
            {"name": "broken", "url": server.url("/broken")},
        ],
    )
    assert [r.source for r in poll_all(sessions(engine), config, NOW, None, ["newsroom"])] == [
        "newsroom"
    ]
    with pytest.raises(InputError, match="no source named 'typo'"):
        poll_all(sessions(engine), config, NOW, None, ["typo"])


@pytest.mark.parametrize("part", ["headers", "body"])
def test_one_deadline_covers_connect_headers_and_body(
    engine: Engine, tmp_path: Path, part: str
) -> None:
    """A server that sends a byte every 0.1 s never trips a per-read timeout of 1 s: the
    source's timeout bounds the whole request, the status line and headers included."""
    with trickling(part) as trickler:
        config = make_config(
            tmp_path, [{"name": "trickle", "url": trickler.url(), "timeout": "1s"}]
        )
        (report,) = poll_all(sessions(engine), config, NOW)
        # The fetcher gave up and hung up long before the answer was out.
        assert trickler.hung_up.wait(30), "the client never gave up on the trickling server"
    phase = "no answer" if part == "headers" else "the answer did not finish"
    assert report.error is not None and f"{phase} within 1s" in report.error, report.error
    with sessions(engine)() as session:
        assert session.scalars(select(Article)).first() is None


def test_a_slow_source_does_not_hold_up_the_others(
    engine: Engine, server: FeedServer, tmp_path: Path
) -> None:
    release = threading.Event()
    feed = server.routes["/feed.xml"]

    def held(headers: dict[str, str]) -> Reply:
        release.wait(60)
        return feed(headers)

    server.routes["/held.xml"] = held
    config = make_config(
        tmp_path,
        [  # the slow one first: polled one after another, it would hold up the fast one
            {"name": "slow", "url": server.url("/held.xml"), "timeout": "60s"},
            {"name": "fast", "url": server.url("/feed.xml")},
        ],
    )
    reports: list[Any] = []
    polling = threading.Thread(
        target=lambda: reports.extend(poll_all(sessions(engine), config, NOW)), daemon=True
    )
    polling.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fast = state(engine, "fast")
            if fast is not None and fast.last_success_at is not None:
                break
            time.sleep(0.05)
        # The fast source is stored while the slow one is still waiting for its answer.
        fast = state(engine, "fast")
        assert fast is not None and fast.last_success_at == NOW, "fast waited for slow"
        assert state(engine, "slow") is None
    finally:
        release.set()
        polling.join(30)
    assert [(r.source, r.new, r.error) for r in reports] == [("slow", 0, None), ("fast", 7, None)]
