"""The per-recipient fast paths (Date once a second, tokens from a prepared signer, values
that need no escaping or quoted-printable passed through) write the very bytes the slow way
does: every fast path switched off, tokens from a fresh HMAC, a new edition per message."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsbroadcast.config.model import Config
from newsbroadcast.errors import PermanentSendError
from newsbroadcast.render import mime
from newsbroadcast.render.email import prepare_edition
from newsbroadcast.render.mime import PreparedEdition, make_message_id
from newsbroadcast.render.templates import make_environment
from newsbroadcast.render.views import EditionView, Recipient, StoryView
from newsbroadcast.subscribers import tokens
from tests.site import TEMPLATES, make_config

NOW = datetime(2026, 3, 2, 5, 0, 7, 250_000, tzinfo=UTC)

RECIPIENTS = [
    Recipient(34, "jane@example.org", "Jane Uwase"),
    Recipient(0, "reader@example.org", None),
    Recipient(2**63, "zoe@exämple.org", "Zoë Ünal 😀"),  # IDN domain, non-ASCII name
    Recipient(7, "o'brien&co@example.org", 'Ada "the" \\ Lovelace\r\nBcc: x@evil.example'),
    Recipient(8, "  padded@example.org\t", "  many   spaces\there \u3000"),
    Recipient(9, "a=b.c@Example.ORG", "<b>Bold</b> & 1+1=2"),
    Recipient(10, "x@" + "sub." * 20 + "example.org", "N" * 90),  # both over a QP line
    Recipient(11, ".@example.org", "."),  # a lone "." is quoted-printable's special case
    Recipient(12, "user+tag@example.org", "trailing space \u2028"),
]
BAD_ADDRESSES = [
    "no-at.example.org",
    "@x.org",
    "a@",
    "tab\t@x.org",
    "ü@x.org",
    "a@exämple..org",
    "<a@x.org>",
]
MOMENTS = [
    NOW,
    NOW + timedelta(microseconds=749_999),  # the same second
    NOW + timedelta(microseconds=750_000),  # the next one
    NOW - timedelta(seconds=3),  # a clock stepped back
    NOW.replace(tzinfo=None),  # naive: UTC
    NOW.astimezone(timezone(timedelta(hours=2))),  # another offset is written as it is
    NOW.astimezone(ZoneInfo("UTC")),  # UTC, but not datetime.UTC
    datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
]


def reference_token(secret: str, purpose: str, subscriber_id: int) -> str:
    """A no-expiry token from scratch, as the module's docstring lays it out."""
    payload = b"\x01" + subscriber_id.to_bytes(max(1, (subscriber_id.bit_length() + 7) // 8))
    seed = b"newsbroadcast-token\x00" + purpose.encode() + b"\x00" + payload
    mac = hmac.new(secret.encode(), seed, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def slow_signer(secret: str, purpose: str) -> Callable[[int], str]:
    return functools.partial(reference_token, secret, purpose)


@pytest.fixture
def slow_way(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to switch the fast paths off until the test ends."""

    def switch_off() -> None:
        never = re.compile(r"(?!)")
        monkeypatch.setattr(mime, "_PLAIN_ADDRESS", never)
        monkeypatch.setattr(mime, "_QP_PLAIN", never)
        monkeypatch.setattr(mime, "_HTML_SPECIAL", re.compile(""))  # every value escaped
        monkeypatch.setattr(tokens, "signer", slow_signer)

    return switch_off


def prepare(config: Config) -> PreparedEdition:
    story = StoryView(
        title="Women officers lead border training",
        url="https://newsroom.example.org/2026/03/border",
        summary="<p>Forty officers completed <em>twelve weeks</em> of training.</p>",
        published_at=NOW - timedelta(hours=3),
    )
    view = EditionView(id=12, digest="daily", period="2026-03-02", created_at=NOW, stories=[story])
    return prepare_edition(make_environment(TEMPLATES), config, config.digests[0], view)


def build(prepared: PreparedEdition, config: Config, who: Recipient, now: datetime) -> bytes:
    message_id = make_message_id(config, prepared.digest, prepared.period, who.email)
    return prepared.message(who, message_id, now)


@pytest.mark.parametrize(
    "public_url", ["https://news.example.org/", "https://news.example.org/?site=a&lang='rw'"]
)
def test_messages_are_byte_for_byte_the_slow_ways(
    slow_way: Callable[[], None], public_url: str
) -> None:
    config = make_config(site={"public_url": public_url})
    shared = prepare(config)  # one edition for all: its Date is remembered between messages
    cases = [(who, now) for now in MOMENTS for who in RECIPIENTS]
    fast = [build(shared, config, who, now) for who, now in cases]
    slow_way()
    slow = [build(prepare(config), config, who, now) for who, now in cases]
    for (who, now), got, expected in zip(cases, fast, slow, strict=True):
        assert got == expected, (who, now)


def test_addresses_refused_the_slow_way_are_refused(slow_way: Callable[[], None]) -> None:
    prepared = prepare(make_config())
    for switched_off in (False, True):
        if switched_off:
            slow_way()
        for address in BAD_ADDRESSES:
            with pytest.raises(PermanentSendError):
                prepared.message(Recipient(1, address, None), "a.b@example.org", NOW)


def test_the_signer_makes_the_tokens_sign_does() -> None:
    for subscriber_id in (0, 1, 255, 256, 65_536, 2**63, 2**64 - 1):
        expected = reference_token("s3cret", "unsubscribe", subscriber_id)
        assert tokens.signer("s3cret", "unsubscribe")(subscriber_id) == expected
        assert tokens.sign("s3cret", "unsubscribe", subscriber_id) == expected
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            tokens.signer("s3cret", "unsubscribe")(bad)
    with pytest.raises(ValueError):
        tokens.signer("", "unsubscribe")
    with pytest.raises(ValueError):
        tokens.signer("s3cret", "bad\x00purpose")


# Characters near every edge the fast paths test: controls, "=", ".", quotes, specials,
# spaces (ASCII and not), line separators, non-ASCII letters.
EDGY = st.text(
    st.sampled_from(list(" \t\r\n\x00\x7f\x85\u2028\u3000\xa0=.\"'<>&@(),:;[\\]aZ9é😀-")),
    max_size=90,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.one_of(EDGY, st.text(max_size=90), st.from_regex(r"[ -~]{60,80}", fullmatch=True)))
@example(".")
@example("a" * 75)
@example("a" * 76)
@example("a ")
@example("@")
@example("a@b")
@example(" two  spaces ")
def test_the_fast_paths_give_what_the_slow_ones_do(value: str) -> None:
    assert mime._qp_value(value) == mime._qp_piece(value.encode("utf-8"))
    assert mime._escape(value) == mime.html.escape(value, quote=True)
    assert mime.one_line(value) == mime._SPACES.sub(" ", mime._CONTROL.sub(" ", value)).strip()
    for address in (value, value + "@example.org", "reader@" + value):
        assert written(address) == written_the_slow_way(address)


def written(address: str) -> str:
    try:
        return mime._ascii_address(address)
    except PermanentSendError:
        return "refused"


def written_the_slow_way(address: str) -> str:
    with mock.patch.object(mime, "_PLAIN_ADDRESS", re.compile(r"(?!)")):
        return written(address)
