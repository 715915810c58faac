"""Bounce and complaint webhooks over real HTTP: the whole web app (create_app) on uvicorn,
on SQLite and PostgreSQL, fed each provider's documented payloads, signed for real with
keys made here. Amazon SES comes through a local SNS topic over HTTPS (tests/sns_topic.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from newsbroadcast import db
from newsbroadcast.db.models import FeedbackReceipt, Subscriber
from newsbroadcast.subscribers.registry import add_subscriber
from newsbroadcast.subscribers.suppressions import is_suppressed
from newsbroadcast.web import create_app, feedback
from newsbroadcast.web.server import BackgroundServer
from tests import provider_payloads as payload
from tests.site import Clock, site_config
from tests.sns_topic import SnsTopic, sign, signing_key

MAILGUN_KEY = "mailgun-signing-key-0123456789"
POSTMARK_TOKEN = "postmark-url-token-0123456789"
POSTMARK_AUTH = ("postmark", "postmark-password-0123456789")
GENERIC_TOKEN = "generic-bearer-token-0123456789"
ALICE, BOB = "alice@example.org", "bob@example.org"

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())


def der_base64(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings page shows it."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@dataclass
class Hooks:
    url: str
    sessions: sessionmaker[Session]
    clock: Clock

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + path, content=content, **kwargs)

    def add(self, *addresses: str) -> None:
        with self.sessions() as s:
            for address in addresses:
                add_subscriber(s, address, self.clock())
            s.commit()

    def state(self, address: str) -> tuple[str, int, bool]:
        """(status, soft bounces, suppressed) of ``address``."""
        with self.sessions() as s:
            sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
            assert sub is not None
            return str(sub.status), sub.soft_bounce_count, is_suppressed(s, address)

    def receipts(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(func.count()).select_from(FeedbackReceipt)) or 0)


def webhooks(**only: Any) -> dict[str, Any]:
    every = {
        "ses": {"topic_arns": ["arn:aws:sns:eu-west-1:123456789012:newsroom-ses-feedback"]},
        "postmark": {
            "token": POSTMARK_TOKEN,
            "username": POSTMARK_AUTH[0],
            "password": POSTMARK_AUTH[1],
        },
        "mailgun": {"signing_key": MAILGUN_KEY, "max_age": "5m"},
        "sendgrid": {"public_key": der_base64(SENDGRID_KEY), "max_age": "5m"},
        "generic": {"token": GENERIC_TOKEN},
    }
    return {"webhooks": {**every, **only}}


@pytest.fixture
def hooks(engine: Engine, tmp_path: Path) -> Iterator[Hooks]:
    """The whole web app, as `newsbroadcast serve` runs it."""
    config = site_config(tmp_path, bounces=webhooks())
    clock = Clock()
    with BackgroundServer.bind() as server:
        server.start(create_app(config, engine=engine, clock=clock))
        yield Hooks(server.url, db.sessions(engine), clock)


def assert_refused(reply: httpx.Response, status: int, error: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == error and reply.json()["detail"]


# --- Postmark ------------------------------------------------------------------------------


def postmark(hooks: Hooks, body: Any, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("auth", POSTMARK_AUTH)
    kwargs.setdefault("params", {"token": POSTMARK_TOKEN})
    return hooks.post("/webhooks/postmark", body, **kwargs)


def test_postmark_hard_bounce_suppresses_at_once_and_a_retry_changes_nothing(
    hooks: Hooks,
) -> None:
    hooks.add(ALICE)
    first = postmark(hooks, payload.postmark_bounce(ALICE))
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "ok", "recorded": 1, "duplicates": 0, "ignored": 0}
    assert hooks.state(ALICE) == ("bounced", 0, True)

    again = postmark(hooks, payload.postmark_bounce(ALICE))
    assert again.json() == {"status": "ok", "recorded": 0, "duplicates": 1, "ignored": 0}


def test_postmark_soft_bounces_count_once_per_event(hooks: Hooks) -> None:
    hooks.add(ALICE)
    for record_id in (11, 11, 12):  # Postmark retries event 11
        reply = postmark(hooks, payload.postmark_bounce(ALICE, "SoftBounce", record_id))
        assert reply.status_code == 200, reply.text
    assert hooks.state(ALICE) == ("active", 2, False)


def test_postmark_complaint_unsubscribes_and_suppresses(hooks: Hooks) -> None:
    hooks.add(ALICE, BOB)
    assert postmark(hooks, payload.postmark_complaint(ALICE)).json()["recorded"] == 1
    assert hooks.state(ALICE) == ("unsubscribed", 0, True)
    # A block (the sender refused) is not the address's fault.
    blocked = postmark(hooks, payload.postmark_bounce(BOB, "Blocked", 13))
    assert blocked.json() == {"status": "ok", "recorded": 0, "duplicates": 0, "ignored": 1}
    assert hooks.state(BOB) == ("active", 0, False)


def test_postmark_needs_its_credentials(hooks: Hooks) -> None:
    hooks.add(ALICE)
    body = payload.postmark_bounce(ALICE)
    assert_refused(postmark(hooks, body, params={}), 401, "unauthorized")
    assert_refused(postmark(hooks, body, params={"token": "guess"}), 401, "unauthorized")
    assert_refused(postmark(hooks, body, auth=("postmark", "wrong")), 401, "unauthorized")
    assert hooks.state(ALICE) == ("active", 0, False) and hooks.receipts() == 0


# --- Mailgun -------------------------------------------------------------------------------


def mailgun_body(
    event: dict[str, Any], timestamp: int, token: str, key: str = MAILGUN_KEY
) -> dict[str, Any]:
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {
        "signature": {
            "timestamp": str(timestamp),
            "token": token,
            "signature": signature.hexdigest(),
        },
        "event-data": event,
    }


def test_mailgun_signed_failure_counts_once_and_a_replayed_token_is_refused(
    hooks: Hooks,
) -> None:
    hooks.add(ALICE, BOB)
    now = int(hooks.clock().timestamp())
    body = mailgun_body(payload.mailgun_event(ALICE), now, "a" * 50)
    first = hooks.post("/webhooks/mailgun", body)
    assert first.json() == {"status": "ok", "recorded": 1, "duplicates": 0, "ignored": 0}
    assert hooks.state(ALICE) == ("bounced", 0, True)

    assert_refused(hooks.post("/webhooks/mailgun", body), 403, "replayed")
    # Mailgun's retry is signed anew; the event id still makes it a duplicate.
    retry = mailgun_body(payload.mailgun_event(ALICE), now + 60, "b" * 50)
    assert hooks.post("/webhooks/mailgun", retry).json()["duplicates"] == 1

    soft = payload.mailgun_event(BOB, severity="temporary", event_id="soft-1")
    assert hooks.post("/webhooks/mailgun", mailgun_body(soft, now, "c" * 50)).status_code == 200
    assert hooks.state(BOB) == ("active", 1, False)
    complaint = payload.mailgun_event(BOB, event="complained", event_id="complaint-1")
    hooks.post("/webhooks/mailgun", mailgun_body(complaint, now, "d" * 50))
    assert hooks.state(BOB) == ("unsubscribed", 1, True)


def test_mailgun_wrong_signatures_and_stale_timestamps_are_refused(hooks: Hooks) -> None:
    hooks.add(ALICE)
    now = int(hooks.clock().timestamp())
    event = payload.mailgun_event(ALICE)
    wrong_key = mailgun_body(event, now, "e" * 50, key="another-signing-key-0123")
    assert_refused(hooks.post("/webhooks/mailgun", wrong_key), 403, "bad_signature")
    forged = mailgun_body(event, now, "f" * 50)
    forged["signature"]["token"] = "g" * 50  # the token no longer matches its signature
    assert_refused(hooks.post("/webhooks/mailgun", forged), 403, "bad_signature")
    stale = mailgun_body(event, now - 600, "h" * 50)  # max_age is 5m
    assert_refused(hooks.post("/webhooks/mailgun", stale), 403, "stale_timestamp")
    unsigned = {"event-data": event}
    assert_refused(hooks.post("/webhooks/mailgun", unsigned), 403, "bad_signature")
    assert hooks.state(ALICE) == ("active", 0, False) and hooks.receipts() == 0


# --- SendGrid ------------------------------------------------------------------------------


def sendgrid_headers(
    body: bytes, timestamp: int, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY
) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
    }


def test_sendgrid_signed_batch_is_recorded_once(hooks: Hooks) -> None:
    hooks.add(ALICE, BOB)
    now = int(hooks.clock().timestamp())
    body = json.dumps(payload.sendgrid_batch(ALICE, BOB)).encode()
    first = hooks.post("/webhooks/sendgrid", body, headers=sendgrid_headers(body, now))
    assert first.json() == {"status": "ok", "recorded": 2, "duplicates": 0, "ignored": 1}
    assert hooks.state(ALICE) == ("bounced", 0, True)
    assert hooks.state(BOB) == ("active", 1, False)

    retry = hooks.post("/webhooks/sendgrid", body, headers=sendgrid_headers(body, now + 30))
    assert retry.json() == {"status": "ok", "recorded": 0, "duplicates": 2, "ignored": 1}
    assert hooks.state(BOB) == ("active", 1, False)

    spam = json.dumps([payload.sendgrid_spamreport(BOB)]).encode()
    hooks.post("/webhooks/sendgrid", spam, headers=sendgrid_headers(spam, now))
    assert hooks.state(BOB) == ("unsubscribed", 1, True)


def test_sendgrid_tampered_unsigned_or_stale_batches_are_refused(hooks: Hooks) -> None:
    hooks.add(ALICE, BOB)
    now = int(hooks.clock().timestamp())
    body = json.dumps(payload.sendgrid_batch(ALICE, BOB)).encode()
    tampered = body.replace(ALICE.encode(), b"carol@example.org")
    cases = [
        (tampered, sendgrid_headers(body, now), "bad_signature"),
        (
            body,
            sendgrid_headers(body, now, ec.generate_private_key(ec.SECP256R1())),
            "bad_signature",
        ),
        (body, sendgrid_headers(body, now - 301), "stale_timestamp"),
        (body, {"Content-Type": "application/json"}, "bad_signature"),
    ]
    for content, headers, error in cases:
        assert_refused(hooks.post("/webhooks/sendgrid", content, headers=headers), 403, error)
    assert hooks.state(ALICE) == ("active", 0, False) and hooks.receipts() == 0


# --- the generic endpoint ------------------------------------------------------------------


def test_generic_endpoint_takes_a_bearer_token_and_names_a_bad_record(hooks: Hooks) -> None:
    hooks.add(ALICE, BOB)
    auth = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
    bad = {
        "events": [
            {"email": ALICE, "type": "bounce", "reason": "550 5.1.1 no such user"},
            {"email": BOB, "type": "bounced"},
        ]
    }
    reply = hooks.post("/webhooks/bounce", bad, headers=auth)
    assert_refused(reply, 400, "invalid_payload")
    assert "events[1].type" in reply.json()["detail"]
    assert hooks.state(ALICE) == ("active", 0, False)  # nothing of that request counted

    assert_refused(hooks.post("/webhooks/bounce", {"events": []}), 401, "unauthorized")
    good = {
        "events": [
            {"email": ALICE, "type": "bounce", "reason": "550 5.1.1", "id": "ev-1"},
            {"email": BOB, "type": "soft", "id": "ev-2"},
        ]
    }
    assert hooks.post("/webhooks/bounce", good, headers=auth).json()["recorded"] == 2
    assert hooks.post("/webhooks/bounce", good, headers=auth).json()["duplicates"] == 2
    assert hooks.state(ALICE) == ("bounced", 0, True)
    assert hooks.state(BOB) == ("active", 1, False)
    reply = hooks.post("/webhooks/bounce", b"{not json", headers=auth)
    assert_refused(reply, 400, "bad_json")
    assert_refused(hooks.post("/webhooks/elsewhere", {}), 404, "not_found")


# --- Amazon SES through SNS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class SesHooks(Hooks):
    sns: SnsTopic

    def send(self, message: dict[str, Any]) -> httpx.Response:
        # SNS posts JSON as text/plain.
        return self.post(
            "/webhooks/ses", message, headers={"Content-Type": "text/plain; charset=UTF-8"}
        )


@pytest.fixture
def ses(engine: Engine, tmp_path: Path, ca: trustme.CA) -> Iterator[SesHooks]:
    """The webhook routes with an SNS client that trusts the local topic's host and CA:
    the one thing production does not (tested below through create_app)."""
    config = site_config(tmp_path, bounces=webhooks())
    clock = Clock()
    with SnsTopic(ca, now=clock.now) as sns, BackgroundServer.bind() as server:
        client = feedback.SnsClient(host_allowed=lambda h: h == "localhost", verify=sns.client_tls)
        app = Starlette(routes=feedback.routes(config, db.sessions(engine), clock, sns=client))
        server.start(app)
        yield SesHooks(server.url, db.sessions(engine), clock, sns)


def test_ses_subscription_is_confirmed_after_its_signature_is_checked(ses: SesHooks) -> None:
    confirmation = ses.sns.confirmation()
    reply = ses.send(confirmation)
    assert reply.json() == {"status": "ok", "subscription": "confirmed"}, reply.text
    assert ses.sns.confirmed == [confirmation["Token"]]

    # Signed for real, but sending us to visit another host: refused, nothing fetched.
    elsewhere = ses.sns.confirmation(SubscribeURL="https://confirm.example.net/?Token=x")
    assert_refused(ses.send(elsewhere), 403, "untrusted_url")
    # A SubscribeURL changed after signing.
    forged = {**ses.sns.confirmation(), "SubscribeURL": ses.sns.url + "/?Action=Other"}
    assert_refused(ses.send(forged), 403, "bad_signature")
    assert len(ses.sns.confirmed) == 1


def test_ses_bounces_and_complaints_are_recorded_once(ses: SesHooks) -> None:
    ses.add(ALICE, BOB)
    bounce = ses.sns.notification(payload.ses_bounce(ALICE, BOB), Subject="Bounce")
    first = ses.send(bounce)
    assert first.json() == {"status": "ok", "recorded": 2, "duplicates": 0, "ignored": 0}
    assert ses.state(ALICE) == ("bounced", 0, True) and ses.state(BOB) == ("bounced", 0, True)
    assert ses.send(bounce).json()["duplicates"] == 2  # SNS retries with the same ids
    assert ses.sns.certificate_fetches == 1  # the certificate is kept

    carol = "carol@example.org"
    ses.add(carol)
    transient = payload.ses_bounce(carol, bounce_type="Transient", feedback_id="0102-soft")
    assert ses.send(ses.sns.notification(transient)).json()["recorded"] == 1
    assert ses.state(carol) == ("active", 1, False)
    # SignatureVersion 1 (SHA1) is still what SNS sends unless told otherwise.
    complaint = ses.sns.notification(payload.ses_complaint(carol), version="1")
    assert ses.send(complaint).json()["recorded"] == 1
    assert ses.state(carol) == ("unsubscribed", 1, True)
    delivery = ses.send(ses.sns.notification(payload.ses_delivery(carol)))
    assert delivery.json() == {"status": "ok", "recorded": 0, "duplicates": 0, "ignored": 1}


def test_ses_messages_not_signed_by_sns_are_refused(ses: SesHooks) -> None:
    ses.add(ALICE)
    sns = ses.sns
    message = payload.ses_bounce(ALICE)
    signed = sns.notification(message)
    tampered = {**signed, "Message": json.dumps(payload.ses_bounce(ALICE, feedback_id="x"))}
    stranger, _ = signing_key(ses.clock.now)  # a key that is not the certificate's
    cases = [
        (tampered, 403, "bad_signature"),
        ({**signed, "Subject": "added after signing"}, 403, "bad_signature"),
        ({**signed, "Signature": sign(stranger, signed)}, 403, "bad_signature"),
        (sns.notification(message, TopicArn=sns.topic + "-other"), 403, "unexpected_topic"),
        (
            sns.notification(message, SigningCertURL=sns.cert_url.replace("https", "http")),
            403,
            "untrusted_url",
        ),
        (
            sns.notification(message, SigningCertURL="https://sns.example.net/cert.pem"),
            403,
            "untrusted_url",
        ),
        (sns.notification(message, SigningCertURL=sns.url + "/cert.txt"), 403, "untrusted_url"),
        ({**signed, "SignatureVersion": "3"}, 400, "invalid_payload"),
    ]
    for body, status, error in cases:
        assert_refused(ses.send(body), status, error)
    assert ses.state(ALICE) == ("active", 0, False) and ses.receipts() == 0

    ses.clock.now += timedelta(days=400)  # the signing certificate has expired
    assert_refused(ses.send(sns.notification(message)), 403, "untrusted_certificate")


def test_production_app_fetches_certificates_only_from_sns_hosts(
    hooks: Hooks, ca: trustme.CA
) -> None:
    """The app as `serve` builds it trusts no loopback host, however well signed."""
    hooks.add(ALICE)
    with SnsTopic(ca, now=hooks.clock.now) as sns:
        reply = hooks.post("/webhooks/ses", sns.notification(payload.ses_bounce(ALICE)))
        assert_refused(reply, 403, "untrusted_url")
        assert sns.certificate_fetches == 0
    assert hooks.state(ALICE) == ("active", 0, False)
