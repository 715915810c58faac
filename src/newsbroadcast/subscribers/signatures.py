"""Checking that a bounce webhook really comes from the provider. Pure: bytes, keys and the
time in; :class:`FeedbackRejected` out when something does not hold. Fetching SNS signing
certificates is I/O and lives in ``web/feedback.py``; what a trusted certificate URL is,
and what SNS signs, is here.

- Amazon SNS: an RSA signature (SignatureVersion 1: SHA1, 2: SHA256) over the fields AWS
  names, each as ``Name\\nvalue\\n``, with the certificate at ``SigningCertURL``
  (https, an ``sns.<region>.amazonaws.com`` host, a ``.pem`` path).
- Mailgun: HMAC-SHA256 of timestamp + token under the webhook signing key, hex.
- SendGrid: ECDSA P-256 / SHA-256 over timestamp + raw body; the public key is the
  base64 DER the SendGrid settings page shows.
- Postmark and the generic endpoint: a shared secret, compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from newsbroadcast.errors import FeedbackRejected

__all__ = [
    "check_sns_url",
    "is_sns_host",
    "load_sendgrid_key",
    "secret_matches",
    "sns_string_to_sign",
    "verify_mailgun",
    "verify_sendgrid",
    "verify_sns",
]

_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com")

# The fields SNS signs, in this order (AWS: "Verifying the signatures of Amazon SNS
# messages"). Subject only when the message has one.
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SNS_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1": hashes.SHA1,
    "2": hashes.SHA256,
}


def _forbidden(code: str, detail: str) -> FeedbackRejected:
    return FeedbackRejected(403, code, detail)


def is_sns_host(host: str) -> bool:
    """True for ``sns.<region>.amazonaws.com`` (e.g. ``sns.eu-west-1.amazonaws.com``)."""
    return _SNS_HOST.fullmatch(host) is not None


def check_sns_url(
    url: object, what: str, host_allowed: Callable[[str], bool], pem: bool = False
) -> str:
    """``url`` if it is https on a host ``host_allowed`` accepts (and, with ``pem``, its
    path ends in ``.pem``); raises FeedbackRejected 403 otherwise."""
    if not isinstance(url, str):
        raise FeedbackRejected(400, "invalid_payload", f"{what} is missing")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "https" or parts.username or parts.password:
        raise _forbidden("untrusted_url", f"{what} must be a plain https URL: {url[:200]}")
    if not host_allowed(host):
        raise _forbidden("untrusted_url", f"{what} is not on an SNS host: {host[:100]}")
    if pem and not parts.path.endswith(".pem"):
        raise _forbidden("untrusted_url", f"{what} does not name a .pem certificate")
    return url


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed for ``message`` (a Notification, SubscriptionConfirmation or
    UnsubscribeConfirmation)."""
    kind = message.get("Type")
    fields = _NOTIFICATION_FIELDS if kind == "Notification" else _CONFIRMATION_FIELDS
    out: list[str] = []
    for name in fields:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise FeedbackRejected(400, "invalid_payload", f"the SNS message has no {name}")
        if not isinstance(value, str):
            raise FeedbackRejected(400, "invalid_payload", f"the SNS {name} is not a string")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def verify_sns(message: Mapping[str, Any], certificate_pem: bytes, now: datetime) -> None:
    """Raise FeedbackRejected unless ``message`` is signed by ``certificate_pem``'s key and
    that certificate is valid at ``now``."""
    version = str(message.get("SignatureVersion"))
    algorithm = _SNS_HASHES.get(version)
    if algorithm is None:
        raise FeedbackRejected(
            400, "invalid_payload", f"unknown SignatureVersion {version[:10]!r} (1 or 2)"
        )
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except binascii.Error:
        raise _forbidden("bad_signature", "the Signature is not base64") from None
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise _forbidden("untrusted_certificate", "the signing certificate is not PEM") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise _forbidden("untrusted_certificate", "the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _forbidden("untrusted_certificate", "the signing certificate has no RSA key")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise _forbidden("bad_signature", "the SNS signature does not match") from None


def _fresh(timestamp: object, now: datetime, max_age: timedelta) -> None:
    try:
        seconds = int(str(timestamp))
    except ValueError:
        raise _forbidden("bad_signature", "the timestamp is not a number") from None
    if abs(now.timestamp() - seconds) > max_age.total_seconds():
        raise _forbidden(
            "stale_timestamp",
            f"signed at {seconds}, more than {int(max_age.total_seconds())}s from now",
        )


def verify_mailgun(signing_key: str, signature: object, now: datetime, max_age: timedelta) -> str:
    """Check a Mailgun body's ``signature`` object; returns its token (the caller refuses
    a token seen before). Raises FeedbackRejected 403."""
    if not isinstance(signature, Mapping):
        raise _forbidden("bad_signature", "no signature object in the body")
    timestamp, token, given = (
        signature.get("timestamp"),
        signature.get("token"),
        signature.get("signature"),
    )
    if not (isinstance(token, str) and isinstance(given, str) and token):
        raise _forbidden("bad_signature", "signature.token or signature.signature is missing")
    _fresh(timestamp, now, max_age)
    expected = hmac.new(
        signing_key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise _forbidden("bad_signature", "the Mailgun signature does not match")
    return token


def load_sendgrid_key(public_key: str) -> ec.EllipticCurvePublicKey:
    """The key SendGrid's settings page shows (base64 DER; the config model checked it)."""
    key = serialization.load_der_public_key(base64.b64decode(public_key.strip()))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: datetime,
    max_age: timedelta,
) -> None:
    """Check the X-Twilio-Email-Event-Webhook-Signature/-Timestamp headers over ``body``
    exactly as received. Raises FeedbackRejected 403."""
    if not timestamp or not signature:
        raise _forbidden(
            "bad_signature",
            "X-Twilio-Email-Event-Webhook-Signature and -Timestamp headers are required",
        )
    _fresh(timestamp, now, max_age)
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature):
        raise _forbidden("bad_signature", "the SendGrid signature does not match") from None


def secret_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a shared secret (Postmark, the generic endpoint)."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
