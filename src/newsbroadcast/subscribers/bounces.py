"""Reading what comes back: SMTP replies, RFC 3464 delivery status notifications and mailto
unsubscribes.

Pure: a reply or a parsed message in, facts out. ``dispatch/email.py`` (replies) and
``subscribers/mailbox.py`` (DSNs) act on them, both through the one classifier, ``classify``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import collapse_rfc2231_value

__all__ = ["Bounce", "BounceKind", "classify", "parse_dsn", "reply_status", "unsubscribe_token"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"^\s*([245])\d\d(?:[ -]+([245]\.\d{1,3}\.\d{1,3})\b)?")


class BounceKind(enum.StrEnum):
    """What a refusal says about the address (RFC 3463 status codes)."""

    none = "none"  # 2.x.x: not a refusal
    bad_address = "bad_address"  # 5.1.x bad mailbox or destination, 5.2.1 disabled: never again
    soft = "soft"  # 4.x.x, and 5.2.2 mailbox full: may pass later; counted
    policy = "policy"  # 5.7.x: the sender is refused, not the address's fault
    permanent = "permanent"  # any other 5.x.x: counts toward email.bounce_after


def classify(status: str) -> BounceKind:
    """The kind of an enhanced status code such as ``5.1.1`` (``""``: unknown, permanent)."""
    klass, _, rest = status.partition(".")
    subject, _, detail = rest.partition(".")
    if klass == "2":
        return BounceKind.none
    if klass == "4":
        return BounceKind.soft
    if subject == "1" or (subject, detail) == ("2", "1"):
        return BounceKind.bad_address
    if (subject, detail) == ("2", "2"):
        return BounceKind.soft
    if subject == "7":
        return BounceKind.policy
    return BounceKind.permanent


def reply_status(reply: str | None) -> str:
    """The enhanced status code of an SMTP reply (``"550 5.1.1 No such user"`` → ``5.1.1``);
    without one, the reply code's class alone (``"550 No"`` → ``5.0.0``); ``""`` for none."""
    m = _REPLY.match(reply or "")
    if m is None:
        return ""
    return m.group(2) or f"{m.group(1)}.0.0"


_TOKEN_IN_SUBJECT = re.compile(r"\bunsubscribe\s+([A-Za-z0-9_-]{8,64})\b", re.IGNORECASE)


@dataclass(frozen=True)
class Bounce:
    """One recipient's outcome in a DSN. ``hard``: will never succeed (5.x.x, failed)."""

    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # e.g. 5.1.1
    diagnostic: str
    hard: bool

    @property
    def is_failure(self) -> bool:
        return self.action in ("failed", "delayed")

    @property
    def kind(self) -> BounceKind:
        """What the failure says about the address; a delay is soft whatever its code."""
        if not self.is_failure:
            return BounceKind.none
        if self.action == "delayed":
            return BounceKind.soft
        return classify(self.status or "5.0.0")


def parse_dsn(message: Message) -> list[Bounce]:
    """The per-recipient reports of a DSN (``multipart/report; report-type=delivery-status``);
    an empty list for any other message. Recipients that were delivered are included with
    ``is_failure`` False, so callers can ignore them."""
    if message.get_content_type() != "multipart/report":
        return []
    if collapse_rfc2231_value(message.get_param("report-type") or "").lower() != "delivery-status":
        return []
    for part in message.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            return _recipients(part)
    return []


def _recipients(part: Message) -> list[Bounce]:
    payload = part.get_payload()
    # The email package parses message/delivery-status into one block per group of fields:
    # the per-message block first, then one per recipient.
    blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    out: list[Bounce] = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        recipient = _address(block.get("Original-Recipient")) or _address(
            block.get("Final-Recipient")
        )
        if not recipient:
            continue
        action = str(block.get("Action", "")).strip().lower()
        status_match = _STATUS.search(str(block.get("Status", "")))
        status = ".".join(status_match.groups()) if status_match else ""
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        hard = action == "failed" and status.startswith("5")
        out.append(Bounce(recipient, action, status, diagnostic, hard))
    return out


def _address(field: object) -> str | None:
    # "rfc822; someone@example.org" (the address type is mandatory; some servers add <>)
    if field is None:
        return None
    kind, _, value = str(field).partition(";")
    if kind.strip().lower() not in ("rfc822", "utf-8") or not value.strip():
        return None
    return value.strip().strip("<>").strip() or None


def unsubscribe_token(message: EmailMessage | Message) -> str | None:
    """The token of a mailto unsubscribe (``subject=unsubscribe <token>``), if any."""
    subject = str(message.get("Subject", ""))
    m = _TOKEN_IN_SUBJECT.search(subject)
    return m.group(1) if m else None
