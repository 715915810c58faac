"""What DATA carries: dot-stuffing and the end-of-data line (RFC 5321 4.5.2)."""

from __future__ import annotations

import pytest

from newsbroadcast.transports.smtp import _dot_stuffed


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n"),
        (b".starts with a dot\r\n", b"..starts with a dot\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),  # a lone dot must not end DATA
        (b"a\r\n..two\r\n", b"a\r\n...two\r\n.\r\n"),
        (b"no final line break", b"no final line break\r\n.\r\n"),
        (b"a.b\r\n x.\r\n", b"a.b\r\n x.\r\n.\r\n"),  # dots inside a line stay single
    ],
)
def test_dot_stuffing_doubles_a_dot_that_starts_a_line(data: bytes, wire: bytes) -> None:
    assert _dot_stuffed(data) == wire
