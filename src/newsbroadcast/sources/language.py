"""A story's language as its source states it, made a BCP 47 tag the networks accept.

Feeds and pages write it many ways ('fr', 'en-US', 'rw_RW', 'EN-gb', 'English'); posts
need a tag ('fr', 'en-GB') or nothing, never a guess.
"""

from __future__ import annotations

import re

# language (2-3 letters) then subtags of 1-8 letters or digits: the shape of BCP 47 tags.
_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
# "Undetermined", "multiple", "no linguistic content": no language to tell a network.
_NOT_A_LANGUAGE = frozenset({"und", "mul", "zxx", "mis"})
MAX_LENGTH = 35  # the length RFC 5646 asks every implementation to accept


def language_tag(value: str | None) -> str | None:
    """``value`` as a BCP 47 tag in its usual case ('en-us' → 'en-US', 'zh_hant_tw' →
    'zh-Hant-TW'); the first of a list ('fr, en'); None when it is not a tag."""
    if not value:
        return None
    first = re.split(r"[,;\s]+", value.strip())[0].replace("_", "-")
    if not _TAG.fullmatch(first) or len(first) > MAX_LENGTH:
        return None
    language, *rest = first.split("-")
    if language.lower() in _NOT_A_LANGUAGE:
        return None
    subtags = [language.lower()]
    for sub in rest:
        if len(sub) == 4 and sub.isalpha():
            subtags.append(sub.title())  # a script: Hant, Latn
        elif len(sub) == 2 and sub.isalpha():
            subtags.append(sub.upper())  # a region: RW, CA
        else:
            subtags.append(sub.lower())
    return "-".join(subtags)
