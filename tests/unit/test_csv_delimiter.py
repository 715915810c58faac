"""Which delimiter a subscriber file uses, found from its first rows."""

from __future__ import annotations

import pytest

from newsbroadcast.subscribers.registry import sniff_delimiter


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email,name,language\na@example.org,Ada,en\n", ","),
        ("email;name;language\na@example.org;Lovelace, Ada;en\n", ";"),
        ("email\tname\na@example.org\tAda\n", "\t"),
        ("email|name\na@example.org|Ada\n", "|"),
        # A quoted semicolon is part of a name, not a delimiter.
        ('email,name\na@example.org,"Ada; Countess"\n', ","),
        ("a@example.org\nb@example.org\n", ","),  # one column: nothing to split
        ("", ","),
    ],
)
def test_the_delimiter_is_found(text: str, expected: str) -> None:
    assert sniff_delimiter(text) == expected
