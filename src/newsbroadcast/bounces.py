"""Reading what comes back: RFC 3464 delivery status notifications and mailto unsubscribes.

Pure: a parsed message in, facts out. ``mailbox.py`` acts on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

__all__ = ["Bounce", "parse_dsn", "unsubscribe_token"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
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


def parse_dsn(message: Message) -> list[Bounce]:
    """The per-recipient reports of a DSN (``multipart/report; report-type=delivery-status``);
    an empty list for any other message. Recipients that were delivered are included with
    ``is_failure`` False, so callers can ignore them."""
    if message.get_content_type() != "multipart/report":
        return []
    if (message.get_param("report-type") or "").lower() != "delivery-status":
        return []
    for part in message.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            return _recipients(part)
    return []


def _recipients(part: Message) -> list[Bounce]:
    payload = part.get_payload()
    # The email package parses message/delivery-status into one block per group of fields:
    # the per-message block first, then one per recipient.
    blocks: list[Message] = payload if isinstance(payload, list) else []
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
