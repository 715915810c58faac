"""The envelope sender (MAIL FROM) of our messages, and reading it back from a bounce (VERP).

With ``email.return_path`` every message goes out with that return path; with ``email.verp``
each one has its own, ``bounces+<token>@domain``. The token names the message by its
Message-ID (which comes from content: site, digest, period and address, or the sign-up a
confirmation answers; never a row id) and is signed under the site secret, so a bounce
sent to it names its delivery without anyone parsing the report, and nobody can forge one
for a message we did not send.

Token layout (35 characters, lowercase base32, so a mail server folding letter case does
not break it): a kind letter (``d`` a digest's Message-ID, ``c`` a confirmation's), then
the Message-ID's 16-byte hash and a 5-byte MAC. The Message-ID's domain is the sender's, as
``render.mime.make_message_id`` writes it. Pure: no database, no clock.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from email.utils import parseaddr

from newsbroadcast.config.model import Config
from newsbroadcast.subscribers import tokens

__all__ = ["TOKEN_LENGTH", "envelope_sender", "message_id_for"]

PURPOSE = "verp"
TOKEN_LENGTH = 35
_MAC_BYTES = 5  # 40 bits: forging one needs about a trillion tries, each a sent email
_KINDS = {"d": "", "c": "confirm-"}  # kind letter -> Message-ID local part prefix
_MESSAGE_ID = re.compile(r"^(confirm-)?([0-9a-f]{32})@(.+)$")


@functools.lru_cache(maxsize=8)
def _bare_address(sender: str) -> str:
    # Asked once per message of a send; the answer only changes with the config.
    return parseaddr(sender)[1]


def envelope_sender(config: Config, message_id: str) -> str:
    """MAIL FROM for the message ``message_id``: site.from's address, ``email.return_path``,
    or with ``email.verp`` the return path tagged with this message's token."""
    email = config.email
    if email.return_path is None:
        return _bare_address(config.site.sender)
    if not email.verp:
        return email.return_path
    token = _token(config.site.secret, message_id)
    if token is None:
        return email.return_path  # a Message-ID of another shape: no token, still delivered
    local, _, domain = email.return_path.rpartition("@")
    return f"{local}+{token}@{domain}"


def message_id_for(config: Config, address: str) -> str | None:
    """The Message-ID named by a VERP ``address`` (``bounces+<token>@domain``) if it is ours
    and its token verifies under one of the site's secrets; None for any other address."""
    if config.email.return_path is None:
        return None
    base_local, _, base_domain = config.email.return_path.lower().rpartition("@")
    local, _, domain = address.strip().strip("<>").lower().rpartition("@")
    base, plus, token = local.partition("+")
    if not plus or base != base_local or domain != base_domain or len(token) != TOKEN_LENGTH:
        return None
    prefix = _KINDS.get(token[0])
    if prefix is None:
        return None
    try:
        raw = base64.b32decode(token[1:].upper() + "=" * 6)
    except (binascii.Error, ValueError):
        return None
    digest, mac = raw[:16], raw[16:]
    if len(mac) != _MAC_BYTES:
        return None
    if not tokens.tag_matches(config.site.secrets, PURPOSE, token[0].encode() + digest, mac):
        return None
    sender_domain = parseaddr(config.site.sender)[1].rpartition("@")[2]
    return f"{prefix}{digest.hex()}@{sender_domain}"


def _token(secret: str, message_id: str) -> str | None:
    m = _MESSAGE_ID.match(message_id)
    if m is None:
        return None
    kind = "c" if m.group(1) else "d"
    digest = bytes.fromhex(m.group(2))
    mac = tokens.tag(secret, PURPOSE, kind.encode() + digest, _MAC_BYTES)
    encoded = base64.b32encode(digest + mac).decode("ascii").rstrip("=").lower()
    return kind + encoded
