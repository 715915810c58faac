"""An Amazon SNS topic on loopback, as an HTTPS endpoint subscribed to it sees one.

It signs messages as SNS does (RSA over ``Name\\nvalue\\n`` of the documented fields,
SignatureVersion 1 = SHA1, 2 = SHA256) with a key generated here, serves that key's
self-signed certificate over HTTPS (a trustme CA, for ``localhost``) at a ``.pem`` path,
and answers ``GET /?Action=ConfirmSubscription`` as SNS does, recording the token.

    with SnsTopic(ca, now=clock.now) as sns:
        body = sns.notification(json.dumps({...}))
        SnsClient(host_allowed=lambda h: h == "localhost", verify=sns.client_tls)
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from datetime import datetime, timedelta
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.loopback_api import ApiRequest, ApiResponse, LoopbackApi

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsroom-ses-feedback"
CERT_PATH = "/SimpleNotificationService-0123456789abcdef.pem"

_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def signing_key(now: datetime) -> tuple[rsa.RSAPrivateKey, bytes]:
    """A fresh RSA key and a self-signed certificate for it (PEM), valid for a year
    around ``now``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sign(key: rsa.RSAPrivateKey, message: dict[str, Any], version: str = "2") -> str:
    """SNS's signature of ``message``, base64."""
    fields = _NOTIFICATION if message["Type"] == "Notification" else _CONFIRMATION
    text = "".join(f"{n}\n{message[n]}\n" for n in fields if message.get(n) is not None)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    raw = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return base64.b64encode(raw).decode()


class SnsTopic(LoopbackApi):
    methods = ("GET",)

    def __init__(self, ca: trustme.CA, now: datetime, topic: str = TOPIC) -> None:
        super().__init__()
        self.topic = topic
        self.key, self.certificate_pem = signing_key(now)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_tls)
        self._server.socket = server_tls.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://localhost:{self._server.server_address[1]}"
        self.client_tls = ssl.create_default_context()
        ca.configure_trust(self.client_tls)
        self.confirmed: list[str] = []  # tokens of confirmed subscriptions
        self.certificate_fetches = 0

    def route(self, request: ApiRequest) -> ApiResponse:
        if request.path == CERT_PATH:
            self.certificate_fetches += 1
            return ApiResponse(200, self.certificate_pem, content_type="text/plain")
        if request.path == "/" and request.query.get("Action") == ["ConfirmSubscription"]:
            self.confirmed.append(request.query["Token"][0])
            arn = f"{self.topic}:{uuid.uuid4()}"
            xml = (
                "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult>"
                f"<SubscriptionArn>{arn}</SubscriptionArn>"
                "</ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
            )
            return ApiResponse(200, xml.encode(), content_type="text/xml")
        return ApiResponse(404, {"error": "not found"})

    @property
    def cert_url(self) -> str:
        return self.url + CERT_PATH

    def _signed(self, message: dict[str, Any], version: str) -> dict[str, Any]:
        message = {
            **message,
            "TopicArn": message.get("TopicArn", self.topic),
            "Timestamp": "2026-11-29T05:29:58.123Z",
            "SignatureVersion": version,
            "SigningCertURL": message.get("SigningCertURL", self.cert_url),
        }
        return {**message, "Signature": sign(self.key, message, version)}

    def notification(
        self, ses_message: dict[str, Any] | str, version: str = "2", **fields: Any
    ) -> dict[str, Any]:
        """A signed Notification carrying ``ses_message`` (JSON-encoded as SNS does)."""
        text = ses_message if isinstance(ses_message, str) else json.dumps(ses_message)
        return self._signed(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "Message": text,
                "UnsubscribeURL": f"{self.url}/?Action=Unsubscribe",
                **fields,
            },
            version,
        )

    def confirmation(self, version: str = "2", **fields: Any) -> dict[str, Any]:
        """A signed SubscriptionConfirmation whose SubscribeURL is this server."""
        token = uuid.uuid4().hex * 2
        return self._signed(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "Message": (
                    f"You have chosen to subscribe to the topic {self.topic}.\n"
                    "To confirm the subscription, visit the SubscribeURL included in this "
                    "message."
                ),
                "SubscribeURL": (
                    f"{self.url}/?Action=ConfirmSubscription&TopicArn={self.topic}&Token={token}"
                ),
                **fields,
            },
            version,
        )
