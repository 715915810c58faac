"""Reading what comes back: SMTP replies, RFC 3464 delivery status notifications, RFC 5965
abuse reports (ARF, a receiver's "this is spam" feedback loop) and mailto unsubscribes.

Pure: a reply or a parsed message in, facts out. ``dispatch/email.py`` (replies) and
``subscribers/mailbox.py`` (DSNs) act on them, both through the one classifier, ``classify``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses

__all__ = [
    "Bounce",
    "BounceKind",
    "Complaint",
    "classify",
    "parse_arf",
    "parse_dsn",
    "reply_status",
    "returned_message_id",
    "unsubscribe_token",
]

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


# RFC 5965 feedback types that mean the person did not want the message. "not-spam",
# "auth-failure" (RFC 6591) and "other" say nothing against the address.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus"})


@dataclass(frozen=True)
class Complaint:
    """An ARF report: someone marked one of our messages as spam (or fraud, or a virus).

    Receivers often redact the recipient's address in the copy they return, so
    ``recipients`` may be empty; ``message_id`` and ``mail_from`` (the envelope sender,
    our VERP address when it is on) name the message anyway."""

    feedback_type: str
    recipients: tuple[str, ...]  # Original-Rcpt-To, else the returned copy's To
    message_id: str | None  # of the returned copy, without angle brackets
    mail_from: str | None  # Original-Mail-From, else the returned copy's Return-Path

    @property
    def is_complaint(self) -> bool:
        return self.feedback_type in COMPLAINT_TYPES


def parse_arf(message: Message) -> Complaint | None:
    """The report in an ARF message (``multipart/report; report-type=feedback-report``);
    None for any other message."""
    if message.get_content_type() != "multipart/report":
        return None
    if collapse_rfc2231_value(message.get_param("report-type") or "").lower() != "feedback-report":
        return None
    fields: Message | None = None
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            fields = _fields_of(part)
            break
    if fields is None:
        return None
    returned = _returned_headers(message)
    recipients = [_bare(v) for v in fields.get_all("Original-Rcpt-To", [])]
    if not recipients and returned is not None:
        recipients = [a for _, a in getaddresses([str(v) for v in returned.get_all("To", [])])]
    mail_from = _bare(str(fields.get("Original-Mail-From", ""))) or (
        _bare(str(returned.get("Return-Path", ""))) if returned is not None else ""
    )
    return Complaint(
        feedback_type=str(fields.get("Feedback-Type", "")).strip().lower(),
        recipients=tuple(r for r in recipients if "@" in r),
        message_id=_message_id(returned),
        mail_from=mail_from or None,
    )


def returned_message_id(message: Message) -> str | None:
    """The Message-ID of the copy (or headers) of our message that a report returns."""
    return _message_id(_returned_headers(message))


def _fields_of(part: Message) -> Message:
    # The email package knows message/feedback-report only as text (some parsers make it a
    # sub-message): either way its lines are header fields.
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload and isinstance(payload[0], Message) else Message()
    text = part.get_payload(decode=True)
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(payload)
    return HeaderParser().parsestr(raw.lstrip("\r\n"))


def _returned_headers(message: Message) -> Message | None:
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "message/global-headers"):
            text = part.get_payload(decode=True)
            raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else ""
            return HeaderParser().parsestr(raw.lstrip("\r\n"))
    return None


def _message_id(headers: Message | None) -> str | None:
    if headers is None:
        return None
    value = str(headers.get("Message-ID", "")).strip()
    return value.strip("<>").strip() or None


def _bare(value: str) -> str:
    # "<a@b>" or "rfc822; a@b" or "a@b"
    _, _, rest = value.rpartition(";") if ";" in value else ("", "", value)
    return rest.strip().strip("<>").strip()
