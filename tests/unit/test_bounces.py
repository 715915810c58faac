"""DSN parsing on real-world shaped bounces (Postfix, Exim, Gmail), abuse reports (ARF) and
mailto unsubscribes."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from newsbroadcast.subscribers.bounces import (
    BounceKind,
    classify,
    parse_arf,
    parse_dsn,
    reply_status,
    unsubscribe_token,
)
from tests.conftest import ROOT

BOUNCES = ROOT / "tests" / "fixtures" / "bounces"


def load(name: str) -> EmailMessage:
    data = (BOUNCES / name).read_bytes()
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "recipient", "status"),
    [
        ("postfix_hard.eml", "gone@example.net", "5.1.1"),
        ("exim_hard.eml", "Nobody.Here@Example.COM", "5.0.0"),
        ("gmail_hard.eml", "closed.account@gmail.example", "5.1.1"),
    ],
)
def test_hard_bounces(name: str, recipient: str, status: str) -> None:
    (bounce,) = parse_dsn(load(name))
    assert bounce.recipient == recipient
    assert bounce.status == status
    assert bounce.action == "failed"
    assert bounce.hard and bounce.is_failure
    assert "5.1.1" in bounce.diagnostic or "does not exist" in bounce.diagnostic


def test_delayed_is_a_soft_bounce() -> None:
    (bounce,) = parse_dsn(load("postfix_delayed.eml"))
    assert bounce.recipient == "full@example.com"
    assert (bounce.action, bounce.status) == ("delayed", "4.2.2")
    assert bounce.is_failure and not bounce.hard
    assert "Mailbox full" in bounce.diagnostic


def test_messages_that_are_not_dsns_give_nothing() -> None:
    assert parse_dsn(load("autoreply.eml")) == []
    # A multipart/report of another kind (a read receipt) is not a bounce either.
    mdn = EmailMessage()
    mdn["Subject"] = "Read: digest"
    mdn.set_content("read")
    mdn.replace_header("Content-Type", "multipart/report; report-type=disposition-notification")
    assert parse_dsn(mdn) == []


def test_failed_with_a_temporary_status_is_soft() -> None:
    text = (BOUNCES / "postfix_hard.eml").read_text()
    text = text.replace("Status: 5.1.1", "Status: 4.4.1")
    (bounce,) = parse_dsn(email.message_from_string(text, policy=email.policy.default))
    assert bounce.action == "failed" and not bounce.hard


def test_unsubscribe_token_from_the_mailto_subject() -> None:
    msg = EmailMessage()
    msg["Subject"] = "unsubscribe AQHWjlzmPIurp204YzvX-m24"
    assert unsubscribe_token(msg) == "AQHWjlzmPIurp204YzvX-m24"
    msg.replace_header("Subject", "Re: Unsubscribe   AQHWjlzmPIurp204YzvX-m24")
    assert unsubscribe_token(msg) == "AQHWjlzmPIurp204YzvX-m24"
    msg.replace_header("Subject", "please unsubscribe me")
    assert unsubscribe_token(msg) is None


@pytest.mark.parametrize(
    ("reply", "status", "kind"),
    [
        ("550 5.1.1 <a@example.org>: No such user", "5.1.1", BounceKind.bad_address),
        ("550-5.1.2 Domain does not exist", "5.1.2", BounceKind.bad_address),
        ("556 5.1.10 Null MX", "5.1.10", BounceKind.bad_address),
        ("550 5.2.1 Mailbox disabled", "5.2.1", BounceKind.bad_address),
        ("552 5.2.2 Mailbox full", "5.2.2", BounceKind.soft),
        ("451 4.7.1 Try again later", "4.7.1", BounceKind.soft),
        ("421 Service not available", "4.0.0", BounceKind.soft),
        ("554 5.7.1 Client host blocked", "5.7.1", BounceKind.policy),
        ("550 Rejected", "5.0.0", BounceKind.permanent),
        ("554 5.6.0 Content refused", "5.6.0", BounceKind.permanent),
        ("250 2.0.0 Ok: queued", "2.0.0", BounceKind.none),
    ],
)
def test_one_classifier_for_smtp_replies(reply: str, status: str, kind: BounceKind) -> None:
    assert reply_status(reply) == status
    assert classify(status) == kind


def test_dsns_go_through_the_same_classifier() -> None:
    text = (BOUNCES / "postfix_hard.eml").read_text()
    (gone,) = parse_dsn(email.message_from_string(text, policy=email.policy.default))
    assert gone.kind == BounceKind.bad_address
    for status, kind in (("5.2.2", BounceKind.soft), ("5.7.1", BounceKind.policy)):
        changed = text.replace("Status: 5.1.1", f"Status: {status}")
        (bounce,) = parse_dsn(email.message_from_string(changed, policy=email.policy.default))
        assert bounce.kind == kind
    (delayed,) = parse_dsn(load("postfix_delayed.eml"))
    assert delayed.kind == BounceKind.soft


# --- abuse reports (ARF, RFC 5965) ----------------------------------------------------------


def test_an_arf_report_names_the_complaint_and_our_message() -> None:
    complaint = parse_arf(load("arf_complaint.eml"))
    assert complaint is not None and complaint.is_complaint
    assert complaint.feedback_type == "abuse"
    assert complaint.recipients == ("annoyed@example.org",)
    assert complaint.message_id == "5f1c0e6b2a9d4c3e8f7a6b5c4d3e2f10@newsroom.example.org"
    assert complaint.mail_from == "digest@newsroom.example.org"


def test_a_redacted_arf_report_still_names_our_message() -> None:
    template = (BOUNCES / "arf_redacted.template").read_text(encoding="utf-8")
    raw = template.format(mail_from="bounces+dabc@newsroom.example.org", mid="m1@example.org")
    complaint = parse_arf(email.message_from_string(raw, policy=email.policy.default))
    assert complaint is not None
    assert complaint.recipients == ()  # "[redacted]" is no address
    assert (complaint.message_id, complaint.mail_from) == (
        "m1@example.org",
        "bounces+dabc@newsroom.example.org",
    )


def test_not_every_report_is_a_complaint() -> None:
    assert parse_arf(load("postfix_hard.eml")) is None  # a DSN
    assert parse_arf(load("autoreply.eml")) is None
    not_spam = (
        (BOUNCES / "arf_complaint.eml")
        .read_bytes()
        .replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam")
    )
    message = email.message_from_bytes(not_spam, policy=email.policy.default)
    complaint = parse_arf(message)
    assert complaint is not None and not complaint.is_complaint
