"""Per-subscriber tokens for the links in emails (unsubscribe, preferences, confirm).

A token names one subscriber for one purpose, optionally until a moment, and is signed with
HMAC-SHA256 under the site secret. It is URL-safe base64 without padding, about 27 characters
(34 with an expiry), so it fits in a URL path and in a mailto subject.

Layout before encoding: ``version (1 byte) | subscriber id (1-8 bytes, big-endian) |
expiry (5 bytes, Unix seconds, versions 2 and 3) | stamp (8 bytes, Unix microseconds, only
in version 3) | MAC (16 bytes)``. The purpose is not stored: it is mixed into the MAC, so a
token made for one purpose never verifies for another. The stamp names the moment the token
answers (a confirmation link: the sign-up that asked for it, about 45 characters in all);
the caller compares it with what it stored, so a newer sign-up retires older links.

Secrets rotate: ``sign`` takes the current secret, ``verify`` accepts a list and tries each,
so links in emails sent before a rotation keep working while the old secret stays listed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from newsbroadcast.errors import NewsBroadcastError

__all__ = ["InvalidToken", "Verified", "read", "sign", "signer", "tag", "tag_matches", "verify"]

_NO_EXPIRY = 1
_WITH_EXPIRY = 2
_WITH_STAMP = 3
_NO_EXPIRY_PREFIX = bytes([_NO_EXPIRY])
_MAC_BYTES = 16  # 128 bits: far beyond guessing, and keeps the token short
_EXPIRY_BYTES = 5  # Unix seconds up to the year 36812
_STAMP_BYTES = 8  # Unix microseconds: the database keeps a sign-up's time to the microsecond
_MAX_ID_BYTES = 8
_DOMAIN = b"newsbroadcast-token\x00"  # keeps these MACs apart from any other use of the secret
_ALPHABET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidToken(NewsBroadcastError):
    """A token that cannot be trusted. ``reason`` is ``"malformed"``, ``"signature"`` (tampered,
    made for another purpose or under an unknown secret: indistinguishable on purpose),
    ``"expired"`` or ``"replaced"`` (genuine, but a newer one took its place: see ``stamp``)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def sign(
    secret: str,
    purpose: str,
    subscriber_id: int,
    expires_at: datetime | None = None,
    stamp: datetime | None = None,
) -> str:
    """A token for ``subscriber_id`` and ``purpose``, valid until ``expires_at`` (if given),
    carrying ``stamp`` (if given; needs ``expires_at``). The same arguments always give the
    same token."""
    if expires_at is None and stamp is None:
        return signer(secret, purpose)(subscriber_id)
    _check_purpose(purpose)
    if not secret:
        raise ValueError("the secret must not be empty")
    id_bytes = _id_bytes(subscriber_id)
    if expires_at is None:
        raise ValueError("a stamped token needs an expiry")
    expiry = _epoch(expires_at).to_bytes(_EXPIRY_BYTES, "big")
    if stamp is None:
        payload = bytes([_WITH_EXPIRY]) + id_bytes + expiry
    else:
        stamp_bytes = _micros(stamp).to_bytes(_STAMP_BYTES, "big")
        payload = bytes([_WITH_STAMP]) + id_bytes + expiry + stamp_bytes
    return _encode(payload + _mac(secret, purpose, payload))


@functools.lru_cache(maxsize=64)
def signer(secret: str, purpose: str) -> Callable[[int], str]:
    """``sign(secret, purpose, subscriber_id)`` without expiry, as a function of the id alone:
    the checks and the key set-up are done here, once, not for each of the two links in
    every email. The same tokens as ``sign``; threads may share the function."""
    _check_purpose(purpose)
    if not secret:
        raise ValueError("the secret must not be empty")
    keyed = _keyed(secret, purpose)

    def sign_forever(subscriber_id: int) -> str:
        payload = _NO_EXPIRY_PREFIX + _id_bytes(subscriber_id)
        mac = keyed.copy()
        mac.update(payload)
        return _encode(payload + mac.digest()[:_MAC_BYTES])

    return sign_forever


@dataclass(frozen=True)
class Verified:
    """What a genuine, unexpired token says: whom it names and, if it has one, its stamp
    (aware UTC, to the microsecond)."""

    subscriber_id: int
    stamp: datetime | None = None


def verify(secrets: Sequence[str], purpose: str, token: str, now: datetime) -> int:
    """The subscriber id in ``token`` if one of ``secrets`` signed it for ``purpose`` and it has
    not expired at ``now``; raises InvalidToken otherwise."""
    return read(secrets, purpose, token, now).subscriber_id


def read(secrets: Sequence[str], purpose: str, token: str, now: datetime) -> Verified:
    """As ``verify``, with the token's stamp: checking it is the caller's part."""
    _check_purpose(purpose)
    if isinstance(secrets, str):
        # A bare string is a sequence of one-character "secrets": a caller's mistake, not a key.
        raise TypeError("secrets must be a list of strings, not a string")
    raw = _decode(token)
    version = raw[0]
    tail = {_NO_EXPIRY: 0, _WITH_EXPIRY: _EXPIRY_BYTES, _WITH_STAMP: _EXPIRY_BYTES + _STAMP_BYTES}
    if version not in tail or not 1 <= len(raw) - 1 - _MAC_BYTES - tail[version] <= _MAX_ID_BYTES:
        raise InvalidToken("malformed", "this link is incomplete or damaged")
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    # Check every secret, without stopping early, so timing does not tell which one matched.
    matched = False
    for secret in secrets:
        if secret and hmac.compare_digest(mac, _mac(secret, purpose, payload)):
            matched = True
    if not matched:
        raise InvalidToken("signature", "this link is not valid (it may have been altered)")
    id_end = len(payload) - tail[version]
    stamp = None
    if version != _NO_EXPIRY:
        expires = int.from_bytes(payload[id_end : id_end + _EXPIRY_BYTES], "big")
        if _epoch(now) >= expires:
            raise InvalidToken("expired", "this link has expired; ask for a new one")
    if version == _WITH_STAMP:
        micros = int.from_bytes(payload[id_end + _EXPIRY_BYTES :], "big")
        stamp = _EPOCH + timedelta(microseconds=micros)
    return Verified(int.from_bytes(payload[1:id_end], "big"), stamp)


def tag(secret: str, purpose: str, data: bytes, size: int) -> bytes:
    """A ``size``-byte MAC of ``data`` for ``purpose``: for tokens of another layout (the VERP
    return path) that need the same keyed, purpose-bound signing."""
    _check_purpose(purpose)
    if not secret:
        raise ValueError("the secret must not be empty")
    return _mac(secret, purpose, data)[:size]


def tag_matches(secrets: Sequence[str], purpose: str, data: bytes, mac: bytes) -> bool:
    """Whether one of ``secrets`` made ``mac`` (``tag``) for ``data`` and ``purpose``."""
    if isinstance(secrets, str):
        raise TypeError("secrets must be a list of strings, not a string")
    matched = False
    for secret in secrets:  # every one, so timing does not tell which matched
        if secret and hmac.compare_digest(mac, tag(secret, purpose, data, len(mac))):
            matched = True
    return matched


def _check_purpose(purpose: str) -> None:
    if not purpose or "\x00" in purpose:
        raise ValueError(f"bad token purpose {purpose!r}")


def _id_bytes(subscriber_id: int) -> bytes:
    if subscriber_id < 0 or subscriber_id.bit_length() > _MAX_ID_BYTES * 8:
        raise ValueError(f"subscriber id {subscriber_id} cannot be put in a token")
    return subscriber_id.to_bytes(max(1, (subscriber_id.bit_length() + 7) // 8), "big")


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    mac = _keyed(secret, purpose).copy()
    mac.update(payload)
    return mac.digest()[:_MAC_BYTES]


@functools.lru_cache(maxsize=64)
def _keyed(secret: str, purpose: str) -> hmac.HMAC:
    """The HMAC with its key and the message's constant start already fed in: every
    message gets two tokens, and the key set-up cost more than the MAC of the payload.
    Callers ``copy()`` it (a copy is independent, so threads may share this one)."""
    return hmac.new(secret.encode(), _DOMAIN + purpose.encode() + b"\x00", hashlib.sha256)


def _epoch(moment: datetime) -> int:
    # A naive datetime is taken as UTC (what the database stores), never as local time.
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # Integer arithmetic: a float timestamp loses microseconds for today's dates.
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not _ALPHABET.fullmatch(token):
        raise InvalidToken("malformed", "this link is incomplete or damaged")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidToken("malformed", "this link is incomplete or damaged") from e
    # base64 leaves spare bits in the last character; several strings decode to the same
    # bytes. Only the canonical one is accepted, so a token has exactly one spelling.
    if not raw or _encode(raw) != token:
        raise InvalidToken("malformed", "this link is incomplete or damaged")
    return raw
