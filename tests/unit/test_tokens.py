"""Signed per-subscriber tokens: only the genuine, unexpired token for a purpose verifies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsbroadcast.errors import NewsBroadcastError
from newsbroadcast.subscribers.tokens import InvalidToken, sign, verify

SECRET = "first-secret-0123456789"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_round_trip_gives_back_the_subscriber() -> None:
    for subscriber_id in (0, 1, 255, 256, 34, 123_456_789, 2**63):
        token = sign(SECRET, "unsubscribe", subscriber_id)
        assert verify([SECRET], "unsubscribe", token, NOW) == subscriber_id


def test_tokens_are_short_url_safe_and_unpadded() -> None:
    token = sign(SECRET, "unsubscribe", 123_456)
    assert len(token) <= 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    with_expiry = sign(SECRET, "confirm", 123_456, NOW + timedelta(days=2))
    assert len(with_expiry) <= 40 and "=" not in with_expiry


def test_signing_is_deterministic_and_differs_per_subscriber_and_purpose() -> None:
    assert sign(SECRET, "unsubscribe", 7) == sign(SECRET, "unsubscribe", 7)
    assert sign(SECRET, "unsubscribe", 7) != sign(SECRET, "unsubscribe", 8)
    assert sign(SECRET, "unsubscribe", 7) != sign(SECRET, "preferences", 7)


def _reason(secrets: list[str], purpose: str, token: str, now: datetime = NOW) -> str:
    with pytest.raises(InvalidToken) as caught:
        verify(secrets, purpose, token, now)
    return caught.value.reason


def test_every_single_character_change_is_rejected() -> None:
    token = sign(SECRET, "unsubscribe", 34)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        for other in alphabet:
            if other != char:
                tampered = token[:i] + other + token[i + 1 :]
                with pytest.raises(InvalidToken):
                    verify([SECRET], "unsubscribe", tampered, NOW)


def test_a_token_for_another_purpose_is_rejected() -> None:
    token = sign(SECRET, "preferences", 34)
    assert _reason([SECRET], "unsubscribe", token) == "signature"


def test_a_token_signed_with_an_unknown_secret_is_rejected() -> None:
    token = sign("some-other-secret-xyz", "unsubscribe", 34)
    assert _reason([SECRET], "unsubscribe", token) == "signature"


def test_rotated_secrets_old_tokens_still_verify_new_ones_use_the_first() -> None:
    old = sign("old-secret-0123456789", "unsubscribe", 34)
    new = sign(SECRET, "unsubscribe", 35)
    rotated = [SECRET, "old-secret-0123456789"]
    assert verify(rotated, "unsubscribe", old, NOW) == 34
    assert verify(rotated, "unsubscribe", new, NOW) == 35
    # Once the old secret is dropped from the list, its tokens stop working.
    assert _reason([SECRET], "unsubscribe", old) == "signature"


def test_expiry_is_enforced_and_cannot_be_edited_away() -> None:
    token = sign(SECRET, "confirm", 34, expires_at=NOW + timedelta(hours=1))
    assert verify([SECRET], "confirm", token, NOW + timedelta(minutes=59)) == 34
    assert _reason([SECRET], "confirm", token, NOW + timedelta(hours=1)) == "expired"
    assert _reason([SECRET], "confirm", token, NOW + timedelta(days=30)) == "expired"


def test_naive_times_are_taken_as_utc() -> None:
    token = sign(SECRET, "confirm", 34, expires_at=datetime(2026, 3, 1, 13, 0))
    assert verify([SECRET], "confirm", token, datetime(2026, 3, 1, 12, 59, tzinfo=UTC)) == 34
    assert _reason([SECRET], "confirm", token, datetime(2026, 3, 1, 13, 0)) == "expired"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "!!!!",
        "abc def",
        "a" * 200,
        "AQ",
        "AQ==",
        sign(SECRET, "unsubscribe", 34) + "=",
        sign(SECRET, "unsubscribe", 34)[:-3],
    ],
)
def test_malformed_tokens_are_rejected_not_crashing(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify([SECRET], "unsubscribe", token, NOW)


def test_a_non_canonical_spelling_of_a_valid_token_is_rejected() -> None:
    # Subscriber 300 makes 19 bytes = 26 base64 characters, whose last one carries 4 spare
    # bits: flipping the lowest decodes to the same bytes, and must still be refused.
    token = sign(SECRET, "unsubscribe", 300)
    assert len(token) == 26
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    variant = token[:-1] + alphabet[last ^ 1]
    assert _reason([SECRET], "unsubscribe", variant) == "malformed"


def test_invalid_token_is_a_newsbroadcast_error() -> None:
    assert issubclass(InvalidToken, NewsBroadcastError)


def test_a_bare_string_of_secrets_is_refused() -> None:
    with pytest.raises(TypeError):
        verify(SECRET, "unsubscribe", sign(SECRET, "unsubscribe", 1), NOW)  # type: ignore[arg-type]


def test_a_stamped_token_gives_back_its_moment_to_the_microsecond() -> None:
    from newsbroadcast.subscribers.tokens import read

    signed_up = datetime(2026, 3, 1, 11, 59, 58, 123_456, tzinfo=UTC)
    token = sign(SECRET, "confirm", 42, NOW + timedelta(days=2), signed_up)
    assert len(token) <= 52
    link = read([SECRET], "confirm", token, NOW)
    assert (link.subscriber_id, link.stamp) == (42, signed_up)
    assert verify([SECRET], "confirm", token, NOW) == 42
    # Another moment, another token; the stamp cannot be changed without the secret.
    assert sign(SECRET, "confirm", 42, NOW + timedelta(days=2), NOW) != token
    for i in range(len(token)):
        tampered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(InvalidToken):
            read([SECRET], "confirm", tampered, NOW)
    # It still expires, and tokens without a stamp read as before.
    assert _reason([SECRET], "confirm", token, NOW + timedelta(days=2)) == "expired"
    plain = sign(SECRET, "confirm", 42, NOW + timedelta(days=2))
    assert read([SECRET], "confirm", plain, NOW).stamp is None
    with pytest.raises(ValueError):
        sign(SECRET, "confirm", 42, stamp=signed_up)  # a stamp needs an expiry
