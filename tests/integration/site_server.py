"""A small web site on 127.0.0.1 for source tests: files from a folder, plus overrides.

Every request is recorded (path, lower-cased headers, monotonic arrival time), so tests can
prove what was and was not fetched. ETags are served for files, and If-None-Match answered
with 304, like a real server.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Reply = tuple[int, dict[str, str], bytes]
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".gz": "application/gzip",
    ".txt": "text/plain",
}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float


@dataclass
class Site:
    root: Path
    overrides: dict[str, Callable[[dict[str, str]], Reply]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def reply(self, path: str, headers: dict[str, str]) -> Reply:
        if path in self.overrides:
            return self.overrides[path](headers)
        local = path.split("?", 1)[0]
        query = path.split("?", 1)[1] if "?" in path else ""
        if query.startswith("page="):  # /news/?page=2 is the file news/page-2.html
            local = local.rstrip("/") + "/" + query.replace("=", "-") + ".html"
        if local.endswith("/"):
            local += "index.html"
        file = (self.root / local.lstrip("/")).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            return 404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"
        body = file.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        kind = _TYPES.get(file.suffix, "application/octet-stream")
        return 200, {"Content-Type": kind, "ETag": etag}, body


@contextmanager
def serve(
    root: Path, overrides: dict[str, Callable[[dict[str, str]], Reply]] | None = None
) -> Iterator[Site]:
    site = Site(root, dict(overrides or {}))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            site.requests.append(Request(self.path, headers, time.monotonic()))
            status, reply_headers, body = site.reply(self.path, headers)
            self.send_response(status)
            for name, value in reply_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(0 if status == 304 else len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    site.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
