"""`serve`'s protocol limits, over raw sockets: a client trickling its headers is cut off
after web.header_timeout, an idle one after the keep-alive timeout, connections past
web.max_connections are refused; and `serve --workers 2` as a real process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from newsbroadcast.web.server import BackgroundServer, ServeOptions
from tests.cli_runner import process_command, process_env
from tests.conftest import ROOT
from tests.smtp_sink import free_port

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


def healthz_app() -> Starlette:
    return Starlette(routes=[Route("/healthz", lambda _r: PlainTextResponse("ok"))])


@pytest.fixture
def server() -> Iterator[BackgroundServer]:
    options = ServeOptions(header_timeout=0.5, keepalive_timeout=0.5, max_connections=3)
    with BackgroundServer.bind() as running:
        running.start(healthz_app(), options)
        yield running


def connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=15)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (the socket timeout bounds it)."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\nok" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed before a whole response: {data!r}"
        data += chunk
    return data


def trickle(sock: socket.socket, lines: int) -> int:
    """Send a header line at a time until the server closes; how many went out."""
    for sent in range(lines):
        try:
            sock.sendall(f"X-Slow-{sent}: a\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            return sent
        # Wait for the server's answer to this line, or none: a read that times out
        # means the connection is still open.
        sock.settimeout(0.1)
        try:
            if sock.recv(4096, socket.MSG_PEEK):
                return sent
        except TimeoutError:
            pass
        finally:
            sock.settimeout(15)
    return lines


def test_a_client_trickling_its_headers_is_cut_off(server: BackgroundServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
        # 300 lines take 30 s or more; the deadline is 0.5 s from the connection.
        assert trickle(sock, 300) < 300
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_the_header_deadline_starts_again_for_each_request() -> None:
    # A long keep-alive timeout: on a busy machine the next request may come well after the
    # first response, and only the header deadline is under test here.
    options = ServeOptions(header_timeout=0.5, keepalive_timeout=60, max_connections=3)
    with BackgroundServer.bind() as server:
        server.start(healthz_app(), options)
        with connect(server) as sock:
            sock.sendall(REQUEST)
            assert b"200 OK" in read_response(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next request, same connection
            assert trickle(sock, 300) < 300
            assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_closed(server: BackgroundServer) -> None:
    with connect(server) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_an_idle_keep_alive_connection_is_closed(server: BackgroundServer) -> None:
    with connect(server) as sock:
        sock.sendall(REQUEST)
        assert b"200 OK" in read_response(sock)
        assert read_all(sock) == b""  # closed without another word


def test_headers_in_pieces_within_the_deadline_are_served() -> None:
    # A deadline no busy machine reaches between two sendall calls: only the pieces count.
    options = ServeOptions(header_timeout=30, keepalive_timeout=30, max_connections=3)
    with BackgroundServer.bind() as server:
        server.start(healthz_app(), options)
        with connect(server) as sock:
            for piece in (b"GET /healthz HT", b"TP/1.1\r\nHost: te", b"st\r\n", b"\r\n"):
                sock.sendall(piece)
            assert b"200 OK" in read_response(sock)


def test_connections_past_the_cap_are_refused() -> None:
    # Long timeouts: the held connections must stay open while the extra one comes.
    options = ServeOptions(header_timeout=60, keepalive_timeout=60, max_connections=2)
    with BackgroundServer.bind() as server:
        server.start(healthz_app(), options)
        held = []
        for _ in range(2):  # the cap: each is served, so the server has counted it
            sock = connect(server)
            sock.sendall(REQUEST)
            assert b"200 OK" in read_response(sock)
            held.append(sock)
        with connect(server) as extra:
            assert read_all(extra).startswith(b"HTTP/1.1 503 ")
        for sock in held:
            sock.close()
        # Once the server has seen one of them go, it takes a new connection again.
        deadline = time.monotonic() + 15
        while True:
            with connect(server) as sock:
                sock.sendall(REQUEST)
                answer = sock.recv(4096)
            if b"200 OK" in answer:
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)


@pytest.fixture
def sample_site(tmp_path: Path) -> Path:
    for part in ("config", "templates"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def test_serve_with_two_workers_limits_and_a_metrics_port(sample_site: Path) -> None:
    port, metrics_port = free_port(), free_port()
    args = ["serve", "--port", str(port), "--workers", "2", "--header-timeout", "0.5"]
    proc = subprocess.Popen(
        process_command(
            sample_site / "config/newsbroadcast.yaml",
            *args,
            "--metrics-port",
            str(metrics_port),
        ),
        env=process_env({"NEWSBROADCAST_SECRET": "serve-secret-0123456789abcdef"}),
        cwd=sample_site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"{base}/subscribe")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert page.status_code == 200
        assert httpx.get(f"{base}/metrics").status_code == 404
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert "newsbroadcast_queue_depth" in scraped.text
        # The limits reach the worker processes (their config is a pickled copy).
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: test\r\n")
            assert trickle(sock, 300) < 300
            assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
