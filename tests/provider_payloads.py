"""Bounce and complaint webhooks as each provider documents them (field names, nesting and
values from the providers' documentation examples; addresses and ids are ours)."""

from __future__ import annotations

from typing import Any


def ses_bounce(
    *recipients: str, bounce_type: str = "Permanent", feedback_id: str = "0102-bounce-1"
) -> dict[str, Any]:
    """An SES bounce notification (the SNS Message, decoded)."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": r,
                    "action": "failed",
                    "status": "5.1.1" if bounce_type == "Permanent" else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
                for r in recipients
            ],
            "timestamp": "2026-11-29T05:29:57.000Z",
            "feedbackId": feedback_id,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-29T05:29:55.000Z",
            "source": "digest@newsroom.example.org",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/newsroom.example.org",
            "messageId": "0102-mail-1",
            "destination": list(recipients),
        },
    }


def ses_complaint(address: str, feedback_type: str = "abuse") -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": address}],
            "complaintFeedbackType": feedback_type,
            "arrivalDate": "2026-11-29T05:29:57.000Z",
            "timestamp": "2026-11-29T05:29:57.000Z",
            "feedbackId": "0102-complaint-1",
        },
        "mail": {"messageId": "0102-mail-2", "destination": [address]},
    }


def ses_delivery(address: str) -> dict[str, Any]:
    return {
        "notificationType": "Delivery",
        "delivery": {"recipients": [address], "smtpResponse": "250 ok"},
        "mail": {"messageId": "0102-mail-3", "destination": [address]},
    }


def postmark_bounce(
    address: str, kind: str = "HardBounce", record_id: int = 4323372036854775807
) -> dict[str, Any]:
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": record_id,
        "Type": kind,
        "TypeCode": {"HardBounce": 1, "SoftBounce": 4096, "Blocked": 100006}.get(kind, 1),
        "Name": "Hard bounce",
        "Tag": "daily",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address,
        "From": "digest@newsroom.example.org",
        "BouncedAt": "2026-11-29T05:29:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": kind == "HardBounce",
        "CanActivate": True,
        "Subject": "Women in Uniform daily",
        "Content": "",
    }


def postmark_complaint(address: str) -> dict[str, Any]:
    return {
        **postmark_bounce(address, "SpamComplaint", 4323372036854775808),
        "RecordType": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
    }


def mailgun_event(
    address: str, event: str = "failed", severity: str = "permanent", event_id: str = "G9Bn5sl1"
) -> dict[str, Any]:
    """``event-data`` of a Mailgun webhook (the caller adds ``signature``)."""
    data: dict[str, Any] = {
        "event": event,
        "id": event_id,
        "timestamp": 1764394197.375624,
        "log-level": "error" if event == "failed" else "warn",
        "recipient": address,
        "recipient-domain": address.partition("@")[2],
        "message": {"headers": {"message-id": "20261129052955.1.digest@newsroom.example.org"}},
        "tags": ["daily"],
        "user-variables": {},
    }
    if event == "failed":
        data |= {
            "severity": severity,
            "reason": "bounce" if severity == "permanent" else "generic",
            "delivery-status": {
                "attempt-no": 1,
                "code": 550 if severity == "permanent" else 452,
                "enhanced-code": "5.1.1" if severity == "permanent" else "4.2.2",
                "message": "5.1.1 The email account that you tried to reach does not exist.",
                "description": "",
                "session-seconds": 0.1,
            },
        }
    return data


def sendgrid_batch(address: str, other: str) -> list[dict[str, Any]]:
    """A SendGrid Event Webhook batch: one of each event we act on, and a delivery."""
    base = {"timestamp": 1764394197, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>"}
    return [
        {
            **base,
            "email": address,
            "event": "bounce",
            "category": ["daily"],
            "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "reason": "500 unknown recipient",
            "status": "5.0.0",
            "type": "bounce",
        },
        {
            **base,
            "email": other,
            "event": "deferred",
            "category": ["daily"],
            "sg_event_id": "t7LEShmowp86DTdUW8M-GQ==",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.1",
            "response": "400 try again later",
            "attempt": "5",
        },
        {
            **base,
            "email": "reader@example.net",
            "event": "delivered",
            "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.2",
            "response": "250 OK",
        },
    ]


def sendgrid_spamreport(address: str) -> dict[str, Any]:
    return {
        "email": address,
        "timestamp": 1764394197,
        "event": "spamreport",
        "sg_event_id": "37nvH5QBz858KGVYCM4uOA==",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.3",
    }
