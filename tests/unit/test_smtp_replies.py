"""The SMTP transport's non-blocking link: replies parsed as smtplib parses them, however
the bytes arrive, and writes that do not fit the socket's buffer at once."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator

import pytest

from newsbroadcast.transports.smtp import _Link
from newsbroadcast.waits import finish


@pytest.fixture
def pair() -> Iterator[tuple[_Link, socket.socket]]:
    ours, server = socket.socketpair()
    yield _Link(ours, timeout=5.0), server
    ours.close()
    server.close()


def test_a_multiline_reply_in_pieces_is_one_reply(pair: tuple[_Link, socket.socket]) -> None:
    link, server = pair
    server.send(b"250-mail.example.org\r\n250-PIPE")
    threading.Timer(0.05, server.send, [b"LINING\r\n250 SIZE 1000\r\n354 go ahead\r\n"]).start()
    assert finish(link.reply()) == (250, b"mail.example.org\nPIPELINING\nSIZE 1000")
    assert finish(link.reply()) == (354, b"go ahead")


def test_a_reply_without_a_code_is_minus_one_as_in_smtplib(
    pair: tuple[_Link, socket.socket],
) -> None:
    link, server = pair
    server.send(b"hello there\r\n")
    assert finish(link.reply()) == (-1, b"o there")


def test_a_line_over_smtplibs_limit_is_refused(pair: tuple[_Link, socket.socket]) -> None:
    link, server = pair
    server.sendall(b"250-" + b"x" * 9000)
    with pytest.raises(smtplib.SMTPResponseException, match="Line too long"):
        finish(link.reply())


def test_a_closed_connection_says_so(pair: tuple[_Link, socket.socket]) -> None:
    link, server = pair
    server.send(b"250-half")
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        finish(link.reply())


def test_a_silent_server_times_out() -> None:
    ours, server = socket.socketpair()
    with ours, server, pytest.raises(TimeoutError):
        finish(_Link(ours, timeout=0.05).reply())


def test_a_write_bigger_than_the_socket_buffer_goes_out_whole(
    pair: tuple[_Link, socket.socket],
) -> None:
    link, server = pair
    data = bytes(range(256)) * 16_384  # 4 MiB: many times any socket buffer
    received = bytearray()

    def drain() -> None:
        while len(received) < len(data) and (chunk := server.recv(65536)):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    finish(link.write(data))
    reader.join(30)
    assert bytes(received) == data
