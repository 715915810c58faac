"""Provider payloads → bounce/complaint events, and the signature checks: pure functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from newsbroadcast.errors import FeedbackRejected
from newsbroadcast.subscribers.feedback import (
    FeedbackEvent,
    FeedbackKind,
    generic_events,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
)
from newsbroadcast.subscribers.signatures import (
    check_sns_url,
    is_sns_host,
    sns_string_to_sign,
    verify_mailgun,
    verify_sendgrid,
)
from tests import provider_payloads as payload

HARD, SOFT, COMPLAINT = FeedbackKind.hard, FeedbackKind.soft, FeedbackKind.complaint
NOW = datetime(2026, 11, 29, 5, 30, tzinfo=UTC)
A, B = "alice@example.org", "bob@example.org"


def kinds(events: tuple[FeedbackEvent, ...]) -> list[tuple[str, FeedbackKind, str | None]]:
    return [(e.address, e.kind, e.event_id) for e in events]


def test_ses_bounce_names_each_recipient_under_the_feedback_id() -> None:
    found = ses_events(json.dumps(payload.ses_bounce(A, B)), "sns-1")
    assert kinds(found.events) == [(A, HARD, "0102-bounce-1"), (B, HARD, "0102-bounce-1")]
    assert "user unknown" in found.events[0].reason
    soft = ses_events(json.dumps(payload.ses_bounce(A, bounce_type="Transient")), "sns-2")
    assert kinds(soft.events) == [(A, SOFT, "0102-bounce-1")]


def test_ses_complaints_deliveries_and_not_spam_reports() -> None:
    assert kinds(ses_events(json.dumps(payload.ses_complaint(A)), "m").events) == [
        (A, COMPLAINT, "0102-complaint-1")
    ]
    not_spam = ses_events(json.dumps(payload.ses_complaint(A, "not-spam")), "m")
    assert not_spam.events == () and not_spam.ignored == 1
    assert ses_events(json.dumps(payload.ses_delivery(A)), "m").ignored == 1
    # SES event publishing says eventType instead of notificationType.
    published = {**payload.ses_bounce(A), "eventType": "Bounce"}
    del published["notificationType"]
    assert len(ses_events(json.dumps(published), "m").events) == 1
    with pytest.raises(FeedbackRejected, match="not SES JSON"):
        ses_events("hello", "m")


def test_a_policy_status_is_not_held_against_the_address() -> None:
    bounce = payload.ses_bounce(A)
    bounce["bounce"]["bouncedRecipients"][0]["status"] = "5.7.1"
    assert ses_events(json.dumps(bounce), "m").ignored == 1
    event = payload.mailgun_event(A)
    event["delivery-status"]["enhanced-code"] = "5.7.1"
    assert mailgun_events({"event-data": event}).ignored == 1


def test_postmark_types() -> None:
    assert kinds(postmark_events(payload.postmark_bounce(A, record_id=7)).events) == [
        (A, HARD, "7")
    ]
    assert postmark_events(payload.postmark_bounce(A, "SoftBounce")).events[0].kind == SOFT
    assert postmark_events(payload.postmark_complaint(A)).events[0].kind == COMPLAINT
    assert postmark_events(payload.postmark_bounce(A, "AutoResponder")).ignored == 1
    assert postmark_events({"RecordType": "Delivery", "Recipient": A}).ignored == 1
    with pytest.raises(FeedbackRejected, match="RecordType"):
        postmark_events({"Email": A})
    with pytest.raises(FeedbackRejected, match="Email"):
        postmark_events({**payload.postmark_bounce(A), "Email": None})


def test_mailgun_events() -> None:
    assert kinds(mailgun_events({"event-data": payload.mailgun_event(A)}).events) == [
        (A, HARD, "G9Bn5sl1")
    ]
    soft = payload.mailgun_event(A, severity="temporary")
    assert mailgun_events({"event-data": soft}).events[0].kind == SOFT
    complained = payload.mailgun_event(A, event="complained")
    assert mailgun_events({"event-data": complained}).events[0].kind == COMPLAINT
    assert mailgun_events({"event-data": payload.mailgun_event(A, event="delivered")}).ignored


def test_sendgrid_batch() -> None:
    found = sendgrid_events(payload.sendgrid_batch(A, B))
    assert kinds(found.events) == [
        (A, HARD, "6g4ZI7SA-xmRDv57GoPIPw=="),
        (B, SOFT, "t7LEShmowp86DTdUW8M-GQ=="),
    ]
    assert found.ignored == 1
    blocked = {"event": "bounce", "type": "blocked", "email": A, "status": "4.0.0"}
    dropped = {"event": "dropped", "email": A, "reason": "Spam Reporting Address"}
    unsubscribed = {"event": "dropped", "email": A, "reason": "Unsubscribed Address"}
    found = sendgrid_events([blocked, dropped, unsubscribed, payload.sendgrid_spamreport(B)])
    assert [e.kind for e in found.events] == [SOFT, COMPLAINT, COMPLAINT]
    assert found.ignored == 1
    with pytest.raises(FeedbackRejected, match=r"event 1 \(bounce\)\.email"):
        sendgrid_events([blocked, {"event": "bounce"}])


def test_generic_format_names_the_bad_record() -> None:
    found = generic_events({"events": [{"email": A, "type": "complaint", "id": 5}]})
    assert kinds(found.events) == [(A, COMPLAINT, "5")]
    with pytest.raises(FeedbackRejected, match=r"events\[0\]: unknown field\(s\) kind"):
        generic_events({"events": [{"email": A, "type": "soft", "kind": "x"}]})
    with pytest.raises(FeedbackRejected, match=r"events\[0\]\.email"):
        generic_events({"events": [{"email": "nobody", "type": "soft"}]})


# --- signatures ----------------------------------------------------------------------------


def test_sns_string_to_sign_follows_the_documented_fields() -> None:
    note = {
        "Type": "Notification",
        "MessageId": "id-1",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:t",
        "Message": "m\nline",
        "Timestamp": "2026-11-29T05:29:58.123Z",
        "SignatureVersion": "1",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    expected = (
        "Message\nm\nline\nMessageId\nid-1\nTimestamp\n2026-11-29T05:29:58.123Z\n"
        "TopicArn\narn:aws:sns:eu-west-1:123456789012:t\nType\nNotification\n"
    )
    assert sns_string_to_sign(note) == expected.encode()
    with_subject = sns_string_to_sign({**note, "Subject": "Hi"})
    assert b"MessageId\nid-1\nSubject\nHi\nTimestamp\n" in with_subject
    confirm = {**note, "Type": "SubscriptionConfirmation", "SubscribeURL": "u", "Token": "t"}
    assert sns_string_to_sign(confirm).startswith(
        b"Message\nm\nline\nMessageId\nid-1\nSubscribeURL\nu\nTimestamp\n"
    )
    assert b"Token\nt\nTopicArn\n" in sns_string_to_sign(confirm)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("sns.us-east-1.amazonaws.com", True),
        ("sns.eu-west-1.amazonaws.com", True),
        ("sns.us-gov-west-1.amazonaws.com", True),
        ("sns.amazonaws.com", False),
        ("sns.us-east-1.amazonaws.com.evil.example", False),
        ("evil-sns.us-east-1.amazonaws.com", False),
        ("s3.us-east-1.amazonaws.com", False),
    ],
)
def test_sns_hosts(host: str, ok: bool) -> None:
    assert is_sns_host(host) is ok


def test_sns_certificate_urls() -> None:
    good = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
    assert check_sns_url(good, "SigningCertURL", is_sns_host, pem=True) == good
    for bad in (
        good.replace("https", "http"),
        good.replace(".pem", ".txt"),
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.example.org/x.pem",
    ):
        with pytest.raises(FeedbackRejected) as e:
            check_sns_url(bad, "SigningCertURL", is_sns_host, pem=True)
        assert e.value.status == 403


def test_mailgun_signature() -> None:
    ts = str(int(NOW.timestamp()))
    sig = hmac.new(b"key-0123456789abcdef", (ts + "tok").encode(), hashlib.sha256).hexdigest()
    signature = {"timestamp": ts, "token": "tok", "signature": sig}
    assert verify_mailgun("key-0123456789abcdef", signature, NOW, timedelta(minutes=5)) == "tok"
    with pytest.raises(FeedbackRejected, match="bad_signature"):
        verify_mailgun("another-key-0123456", signature, NOW, timedelta(minutes=5))
    with pytest.raises(FeedbackRejected, match="stale_timestamp"):
        verify_mailgun(
            "key-0123456789abcdef", signature, NOW + timedelta(minutes=6), timedelta(minutes=5)
        )


def test_sendgrid_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    body, ts = b'[{"event":"bounce"}]', str(int(NOW.timestamp()))
    sig = base64.b64encode(key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    verify_sendgrid(key.public_key(), ts, sig, body, NOW, timedelta(minutes=5))
    with pytest.raises(FeedbackRejected, match="bad_signature"):
        verify_sendgrid(key.public_key(), ts, sig, body + b" ", NOW, timedelta(minutes=5))
    with pytest.raises(FeedbackRejected, match="bad_signature"):
        verify_sendgrid(key.public_key(), ts, "not base64!", body, NOW, timedelta(minutes=5))
