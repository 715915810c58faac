"""What email providers report back through webhooks, as one list of events.

Pure: a provider's decoded JSON payload in, :class:`Feedback` out (``web/feedback.py``
verifies the request first, ``subscribers/feedback_log.py`` records the events). Each
provider's words are mapped to three kinds:

- ``hard``: the address will never take mail (suppressed at once),
- ``soft``: it may later (counted, as the mailbox counts delayed DSNs),
- ``complaint``: the person marked a message as spam (suppressed, unsubscribed).

Anything else (deliveries, opens, auto-replies) is counted in ``ignored``. Where a record
carries an RFC 3463 status, the one classifier (``bounces.classify``) has the last word on
policy refusals (5.7.x): the sender was blocked, not the address, so nothing is held
against it, as with SMTP replies and DSNs. A record that is not in the provider's format
raises :class:`FeedbackRejected` naming it; nothing of that payload is recorded.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newsbroadcast.errors import FeedbackRejected
from newsbroadcast.subscribers.bounces import BounceKind, classify

__all__ = [
    "Feedback",
    "FeedbackEvent",
    "FeedbackKind",
    "generic_events",
    "mailgun_events",
    "postmark_events",
    "sendgrid_events",
    "ses_events",
]


class FeedbackKind(enum.StrEnum):
    hard = "hard"
    soft = "soft"
    complaint = "complaint"


@dataclass(frozen=True)
class FeedbackEvent:
    """One report about one address. ``event_id`` is the provider's id for it (None when
    the provider gives none): a retry carries the same one, so it is recorded once."""

    address: str
    kind: FeedbackKind
    reason: str
    event_id: str | None = None


@dataclass(frozen=True)
class Feedback:
    events: tuple[FeedbackEvent, ...] = ()
    ignored: int = 0  # records that say nothing against an address


def _invalid(detail: str) -> FeedbackRejected:
    return FeedbackRejected(400, "invalid_payload", detail)


def _address(value: object, where: str) -> str:
    if not isinstance(value, str) or "@" not in value.strip():
        raise _invalid(f"{where}: no email address (got {value!r:.80})")
    return value.strip()


def _text(*parts: object) -> str:
    return " ".join(" ".join(str(p).split()) for p in parts if p not in (None, ""))[:200]


def _unless_policy(kind: FeedbackKind, status: object) -> FeedbackKind | None:
    """``kind``, or None when ``status`` (e.g. ``5.7.1``) says the sender was refused."""
    if isinstance(status, str) and status and classify(status) == BounceKind.policy:
        return None
    return kind


def _collect(found: list[FeedbackEvent | None]) -> Feedback:
    events = tuple(e for e in found if e is not None)
    return Feedback(events, len(found) - len(events))


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(f"{where}: expected a JSON object")
    return value


# --- Amazon SES (through SNS) ------------------------------------------------------------

_SES_BOUNCE = {"Permanent": FeedbackKind.hard, "Transient": FeedbackKind.soft}


def ses_events(message: str, message_id: str) -> Feedback:
    """The events in an SNS notification's ``Message`` from SES: a notification
    (``notificationType``) or a published event (``eventType``) of type Bounce or
    Complaint; Delivery, Send, Open and the rest are ignored. Events are identified by
    SES's ``feedbackId``, else by the SNS ``MessageId`` (the same on SNS's retries)."""
    try:
        data = json.loads(message)
    except ValueError as e:
        raise _invalid(f"the SNS Message is not SES JSON: {e}") from None
    data = _mapping(data, "Message")
    what = data.get("notificationType") or data.get("eventType")
    if what == "Bounce":
        bounce = _mapping(data.get("bounce"), "Message.bounce")
        # Undetermined: SES could not tell; a soft count is the cautious reading.
        kind = _SES_BOUNCE.get(str(bounce.get("bounceType")), FeedbackKind.soft)
        event_id = str(bounce.get("feedbackId") or message_id)
        found: list[FeedbackEvent | None] = []
        for i, r in enumerate(_list(bounce.get("bouncedRecipients"), "bouncedRecipients")):
            r = _mapping(r, f"Message.bounce.bouncedRecipients[{i}]")
            address = _address(r.get("emailAddress"), f"bouncedRecipients[{i}].emailAddress")
            reason = _text(
                bounce.get("bounceType"), bounce.get("bounceSubType"), r.get("diagnosticCode")
            )
            real = _unless_policy(kind, r.get("status"))
            found.append(None if real is None else FeedbackEvent(address, real, reason, event_id))
        return _collect(found)
    if what == "Complaint":
        complaint = _mapping(data.get("complaint"), "Message.complaint")
        recipients = _list(complaint.get("complainedRecipients"), "complainedRecipients")
        # ARF "not-spam": the person says the opposite (a message wrongly filtered).
        if complaint.get("complaintFeedbackType") == "not-spam":
            return Feedback((), len(recipients))
        event_id = str(complaint.get("feedbackId") or message_id)
        reason = _text("complaint", complaint.get("complaintFeedbackType"))
        return Feedback(
            tuple(
                FeedbackEvent(
                    _address(
                        _mapping(r, f"complainedRecipients[{i}]").get("emailAddress"),
                        f"complainedRecipients[{i}].emailAddress",
                    ),
                    FeedbackKind.complaint,
                    reason,
                    event_id,
                )
                for i, r in enumerate(recipients)
            )
        )
    if not isinstance(what, str):
        raise _invalid("the SNS Message has neither notificationType nor eventType")
    return Feedback((), 1)


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _invalid(f"{where}: expected a JSON array")
    return value


# --- Postmark ------------------------------------------------------------------------------

_POSTMARK = {
    "HardBounce": FeedbackKind.hard,
    "BadEmailAddress": FeedbackKind.hard,
    "ManuallyDeactivated": FeedbackKind.hard,  # Postmark will not send to it any more
    "SoftBounce": FeedbackKind.soft,
    "Transient": FeedbackKind.soft,
    "DnsError": FeedbackKind.soft,
    "SpamComplaint": FeedbackKind.complaint,
}
# Blocked and DMARCPolicy refuse the sender, AutoResponder, Subscribe, ... are no failure:
# all ignored.


def postmark_events(data: object) -> Feedback:
    """A Postmark Bounce or SpamComplaint webhook (``RecordType``); other record types
    (Delivery, Open, Click, SubscriptionChange) are ignored. Identified by its ``ID``."""
    record = _mapping(data, "the body")
    record_type = record.get("RecordType")
    if record_type not in ("Bounce", "SpamComplaint"):
        if not isinstance(record_type, str):
            raise _invalid("no RecordType: not a Postmark webhook")
        return Feedback((), 1)
    kind = _POSTMARK.get(str(record.get("Type")))
    if record_type == "SpamComplaint":
        kind = FeedbackKind.complaint
    if kind is None:
        return Feedback((), 1)
    event_id = record.get("ID")
    return Feedback(
        (
            FeedbackEvent(
                _address(record.get("Email"), "Email"),
                kind,
                _text(record.get("Type"), record.get("Description"), record.get("Details")),
                None if event_id in (None, "") else str(event_id),
            ),
        )
    )


# --- Mailgun -------------------------------------------------------------------------------

_MAILGUN_SEVERITY = {"permanent": FeedbackKind.hard, "temporary": FeedbackKind.soft}


def mailgun_events(data: object) -> Feedback:
    """A Mailgun webhook's ``event-data``: ``failed`` (by ``severity``) and ``complained``;
    other events are ignored. Identified by ``event-data.id``. The signature is checked by
    the caller (``signatures.verify_mailgun``)."""
    body = _mapping(data, "the body")
    event = _mapping(body.get("event-data"), "event-data")
    name = event.get("event")
    if name not in ("failed", "complained"):
        if not isinstance(name, str):
            raise _invalid("event-data.event is missing")
        return Feedback((), 1)
    address = _address(event.get("recipient"), "event-data.recipient")
    event_id = event.get("id")
    event_id = None if event_id in (None, "") else str(event_id)
    if name == "complained":
        return Feedback((FeedbackEvent(address, FeedbackKind.complaint, "complaint", event_id),))
    severity = event.get("severity")
    kind = _MAILGUN_SEVERITY.get(str(severity))
    if kind is None:
        raise _invalid(f"event-data.severity must be permanent or temporary, not {severity!r}")
    status = event.get("delivery-status")
    status = status if isinstance(status, Mapping) else {}
    reason = _text(
        event.get("reason"),
        status.get("code"),
        status.get("enhanced-code"),
        status.get("message") or status.get("description"),
    )
    real = _unless_policy(kind, status.get("enhanced-code"))
    return _collect([None if real is None else FeedbackEvent(address, real, reason, event_id)])


# --- SendGrid ------------------------------------------------------------------------------

_DROPPED = {
    "Bounced Address": FeedbackKind.hard,
    "Invalid": FeedbackKind.hard,
    "Spam Reporting Address": FeedbackKind.complaint,
}


def sendgrid_events(data: object) -> Feedback:
    """A SendGrid Event Webhook batch (a JSON array): ``bounce`` (its ``type`` bounce:
    hard, blocked: soft), ``blocked`` and ``deferred`` (soft), ``dropped`` (by its reason:
    a bounced or invalid address is hard, a spam-reporting one a complaint) and
    ``spamreport``. Identified by ``sg_event_id``."""
    found: list[FeedbackEvent | None] = []
    for i, record in enumerate(_list(data, "the body")):
        record = _mapping(record, f"event {i}")
        name = record.get("event")
        if not isinstance(name, str):
            raise _invalid(f"event {i}: no 'event' field")
        kind: FeedbackKind | None
        if name == "bounce":
            kind = FeedbackKind.soft if record.get("type") == "blocked" else FeedbackKind.hard
            if kind == FeedbackKind.hard and str(record.get("status", "")).startswith("4"):
                kind = FeedbackKind.soft
            kind = _unless_policy(kind, record.get("status"))
        elif name in ("blocked", "deferred"):
            kind = _unless_policy(FeedbackKind.soft, record.get("status"))
        elif name == "dropped":
            kind = _DROPPED.get(str(record.get("reason")))
        elif name == "spamreport":
            kind = FeedbackKind.complaint
        else:
            kind = None
        if kind is None:
            found.append(None)
            continue
        event_id = record.get("sg_event_id")
        found.append(
            FeedbackEvent(
                _address(record.get("email"), f"event {i} ({name}).email"),
                kind,
                _text(name, record.get("status"), record.get("reason") or record.get("response")),
                None if event_id in (None, "") else str(event_id),
            )
        )
    return _collect(found)


# --- our own generic format ----------------------------------------------------------------

_GENERIC = {
    "bounce": FeedbackKind.hard,
    "soft": FeedbackKind.soft,
    "complaint": FeedbackKind.complaint,
}


def generic_events(data: object) -> Feedback:
    """``{"events": [{"email": ..., "type": "bounce|soft|complaint", "reason": ...,
    "id": ...}]}``; ``reason`` and ``id`` are optional (an ``id`` makes a retry harmless)."""
    body = _mapping(data, "the body")
    events = []
    for i, record in enumerate(_list(body.get("events"), "events")):
        record = _mapping(record, f"events[{i}]")
        unknown = set(record) - {"email", "type", "reason", "id"}
        if unknown:
            raise _invalid(f"events[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        kind = _GENERIC.get(str(record.get("type")))
        if kind is None:
            raise _invalid(
                f"events[{i}].type must be bounce, soft or complaint, not {record.get('type')!r}"
            )
        event_id = record.get("id")
        events.append(
            FeedbackEvent(
                _address(record.get("email"), f"events[{i}].email"),
                kind,
                _text(record.get("reason")) or str(kind),
                None if event_id in (None, "") else str(event_id),
            )
        )
    return Feedback(tuple(events))
