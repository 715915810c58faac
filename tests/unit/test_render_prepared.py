"""The prepared edition's quoted-printable, encoded once per edition, decodes to exactly the
body a per-recipient encoding would: the recipient's values land intact wherever they are."""

from __future__ import annotations

import quopri

import pytest

from newsbroadcast.render.mime import Body, quoted_printable

SENTINELS = ["nbslotA0x", "nbslotA1x", "nbslotA2x", "nbslotA3x"]


@pytest.mark.parametrize(
    "values",
    [
        ("Ada", "ada@example.org", "https://news.example.org/u/t", "https://x/p"),
        ("", "a@b.org", "", ""),
        ("Zoë = Ünal 😀  ", "z@example.org", "https://n/u/" + "x" * 300, "https://p/ ="),
    ],
)
def test_encoded_once_decodes_like_encoded_per_recipient(values: tuple[str, ...]) -> None:
    rendered = (
        "Hello nbslotA0x,\n"
        + "a long line of café text = with equals and trailing spaces   " * 5
        + "nbslotA2x\n\tindented nbslotA1x at nbslotA3x\n"
        + "é" * 200
        + "nbslotA0x"
    )
    body = Body(rendered, SENTINELS)
    once = body.fill_encoded(values)
    per_recipient = quoted_printable(body.fill(values))
    assert quopri.decodestring(once) == quopri.decodestring(per_recipient)
    assert once.endswith(b"\r\n")
    lines = once.split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert b"\n" not in once.replace(b"\r\n", b"")
