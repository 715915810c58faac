"""Bounce and complaint webhooks from email providers: ``POST /webhooks/<provider>``.

=====================  ==============================================================
``/webhooks/ses``      Amazon SES through an SNS topic: every message's signature is
                       checked with the certificate at its SigningCertURL (https on an
                       ``sns.<region>.amazonaws.com`` host, fetched once and kept);
                       a SubscriptionConfirmation is confirmed by visiting its
                       SubscribeURL (same host rule). Unknown TopicArns are refused.
``/webhooks/postmark`` Postmark Bounce and SpamComplaint webhooks (basic auth and/or
                       ``?token=``: Postmark signs nothing).
``/webhooks/mailgun``  Mailgun (HMAC in the body; stale timestamps, replayed tokens
                       refused).
``/webhooks/sendgrid`` SendGrid's Signed Event Webhook (ECDSA over timestamp + body).
``/webhooks/bounce``   Our generic format, ``Authorization: Bearer <token>``.
=====================  ==============================================================

Only configured providers answer (``bounces.webhooks``). Every answer is JSON: 200 with
what was recorded; 4xx with ``{"error": code, "detail": why}`` and nothing recorded when
the request is not trusted or not readable (providers do not retry most 4xx); 503 when
the database or the SNS certificate cannot be reached (providers retry 5xx). The checks
run before anything is parsed or stored: verification first, then the payload.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from newsbroadcast.config.model import Config, Webhooks
from newsbroadcast.db.models import utcnow
from newsbroadcast.errors import FeedbackRejected
from newsbroadcast.subscribers import feedback, signatures
from newsbroadcast.subscribers.feedback_log import record_feedback
from newsbroadcast.web.security import read_body

__all__ = ["SnsClient", "routes"]

log = logging.getLogger("newsbroadcast.webhooks")

MAX_BODY_BYTES = 5 * 1024 * 1024  # a SendGrid batch holds up to a few thousand events
MAX_CERTIFICATE_BYTES = 64 * 1024
SNS_TIMEOUT_SECONDS = 10.0


class SnsClient:
    """Fetches SNS signing certificates (kept by URL: SNS signs with few) and visits
    SubscribeURLs. ``host_allowed`` decides which hosts these URLs may name, and
    ``verify`` which TLS certificates are trusted; both default to what production needs
    and exist so a test can point them at a local HTTPS server."""

    def __init__(
        self,
        host_allowed: Callable[[str], bool] = signatures.is_sns_host,
        verify: ssl.SSLContext | bool = True,
        keep: int = 32,
    ) -> None:
        self.host_allowed = host_allowed
        self._verify = verify
        self._keep = keep
        self._certificates: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def _get(self, url: str, limit: int) -> bytes:
        # No redirects: a redirect could lead off the SNS host that was checked.
        with (
            httpx.Client(verify=self._verify, timeout=SNS_TIMEOUT_SECONDS) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise FeedbackRejected(
                    503, "sns_unavailable", f"GET {url[:200]}: HTTP {response.status_code}"
                )
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise FeedbackRejected(
                        403, "untrusted_certificate", f"{url[:200]} is over {limit} bytes"
                    )
            return body

    def certificate(self, url: str) -> bytes:
        """The PEM at ``url`` (checked by the caller), fetched once."""
        with self._lock:
            if url in self._certificates:
                self._certificates.move_to_end(url)
                return self._certificates[url]
        try:
            pem = self._get(url, MAX_CERTIFICATE_BYTES)
        except httpx.HTTPError as e:
            raise FeedbackRejected(
                503, "sns_unavailable", f"cannot fetch the signing certificate: {e}"
            ) from e
        with self._lock:
            self._certificates[url] = pem
            while len(self._certificates) > self._keep:
                self._certificates.popitem(last=False)
        return pem

    def confirm(self, url: str) -> None:
        """Visit a SubscribeURL (checked by the caller)."""
        try:
            self._get(url, 1024 * 1024)
        except httpx.HTTPError as e:
            raise FeedbackRejected(
                503, "sns_unavailable", f"cannot confirm the subscription: {e}"
            ) from e


Work = Callable[[Headers, QueryParams, bytes, datetime], dict[str, Any]]


def routes(
    config: Config,
    sessions: sessionmaker[Session],
    clock: Callable[[], datetime] = utcnow,
    sns: SnsClient | None = None,
) -> list[Route]:
    """The webhook endpoints of the configured providers."""
    hooks = config.bounces.webhooks
    providers = _Providers(config, hooks, sessions, sns or SnsClient())
    found: list[Route] = []
    for name, work in providers.configured().items():
        path = "/webhooks/bounce" if name == "generic" else f"/webhooks/{name}"
        found.append(Route(path, _endpoint(name, work, clock), methods=["POST"]))
    # A provider pointed at an endpoint that is not configured learns so in JSON.
    found.append(Route("/webhooks/{rest:path}", _not_configured, methods=["POST"]))
    return found


def _endpoint(provider: str, work: Work, clock: Callable[[], datetime]) -> Callable[..., Any]:
    async def handler(request: Request) -> JSONResponse:
        raw = await read_body(request, MAX_BODY_BYTES)
        if raw is None:
            return _error(413, "payload_too_large", f"at most {MAX_BODY_BYTES} bytes")
        try:
            answer = await run_in_threadpool(
                work, request.headers, request.query_params, raw, clock()
            )
        except FeedbackRejected as e:
            log.warning("%s webhook refused (%d %s): %s", provider, e.status, e.code, e.detail)
            return _error(e.status, e.code, e.detail)
        except SQLAlchemyError as e:
            log.error("%s webhook: the database failed: %s", provider, e)
            return _error(503, "database_unavailable", "try again later")
        return JSONResponse({"status": "ok", **answer})

    return handler


class _Providers:
    """The work behind each endpoint: check the request, read it, record it."""

    def __init__(
        self,
        config: Config,
        hooks: Webhooks,
        sessions: sessionmaker[Session],
        sns: SnsClient,
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.sessions = sessions
        self.sns = sns
        self.sendgrid_key = (
            signatures.load_sendgrid_key(hooks.sendgrid.public_key) if hooks.sendgrid else None
        )

    def configured(self) -> dict[str, Work]:
        every: dict[str, tuple[object, Work]] = {
            "ses": (self.hooks.ses, self.ses),
            "postmark": (self.hooks.postmark, self.postmark),
            "mailgun": (self.hooks.mailgun, self.mailgun),
            "sendgrid": (self.hooks.sendgrid, self.sendgrid),
            "generic": (self.hooks.generic, self.generic),
        }
        return {name: work for name, (settings, work) in every.items() if settings is not None}

    def _record(
        self, provider: str, found: feedback.Feedback, now: datetime, token: str | None = None
    ) -> dict[str, Any]:
        outcome = record_feedback(self.sessions, self.config, provider, found, now, token)
        return asdict(outcome)

    def ses(
        self, headers: Headers, query: QueryParams, raw: bytes, now: datetime
    ) -> dict[str, Any]:
        settings = self.hooks.ses
        assert settings is not None
        message = _json_object(raw)
        kind = message.get("Type")
        if kind not in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
            raise _invalid(f"Type {str(kind)[:40]!r} is not an SNS message type")
        topic = message.get("TopicArn")
        if topic not in settings.topic_arns:
            raise FeedbackRejected(
                403,
                "unexpected_topic",
                f"TopicArn {str(topic)[:200]!r} is not in bounces.webhooks.ses.topic_arns",
            )
        url = signatures.check_sns_url(
            message.get("SigningCertURL"), "SigningCertURL", self.sns.host_allowed, pem=True
        )
        signatures.verify_sns(message, self.sns.certificate(url), now)
        if kind == "SubscriptionConfirmation":
            if not settings.confirm_subscriptions:
                log.info("SNS subscription to %s not confirmed (confirm_subscriptions)", topic)
                return {"subscription": "left unconfirmed"}
            subscribe = signatures.check_sns_url(
                message.get("SubscribeURL"), "SubscribeURL", self.sns.host_allowed
            )
            self.sns.confirm(subscribe)
            log.info("SNS subscription to %s confirmed", topic)
            return {"subscription": "confirmed"}
        if kind == "UnsubscribeConfirmation":
            log.warning("SNS says this endpoint was unsubscribed from %s", topic)
            return {"subscription": "unsubscribed"}
        found = feedback.ses_events(str(message.get("Message")), str(message.get("MessageId")))
        return self._record("ses", found, now)

    def postmark(
        self, headers: Headers, query: QueryParams, raw: bytes, now: datetime
    ) -> dict[str, Any]:
        settings = self.hooks.postmark
        assert settings is not None
        if settings.token is not None and not signatures.secret_matches(
            query.get("token"), settings.token
        ):
            raise _unauthorized("add ?token=<bounces.webhooks.postmark.token> to the URL")
        if settings.username is not None and settings.password is not None:
            user, password = _basic_auth(headers)
            if not (
                signatures.secret_matches(user, settings.username)
                & signatures.secret_matches(password, settings.password)
            ):
                raise _unauthorized("set the webhook URL with basic auth (https://user:pass@...)")
        return self._record("postmark", feedback.postmark_events(_json(raw)), now)

    def mailgun(
        self, headers: Headers, query: QueryParams, raw: bytes, now: datetime
    ) -> dict[str, Any]:
        settings = self.hooks.mailgun
        assert settings is not None
        body = _json_object(raw)
        token = signatures.verify_mailgun(
            settings.signing_key, body.get("signature"), now, settings.max_age
        )
        return self._record("mailgun", feedback.mailgun_events(body), now, token=token)

    def sendgrid(
        self, headers: Headers, query: QueryParams, raw: bytes, now: datetime
    ) -> dict[str, Any]:
        settings = self.hooks.sendgrid
        assert settings is not None and self.sendgrid_key is not None
        signatures.verify_sendgrid(
            self.sendgrid_key,
            headers.get("x-twilio-email-event-webhook-timestamp"),
            headers.get("x-twilio-email-event-webhook-signature"),
            raw,
            now,
            settings.max_age,
        )
        return self._record("sendgrid", feedback.sendgrid_events(_json(raw)), now)

    def generic(
        self, headers: Headers, query: QueryParams, raw: bytes, now: datetime
    ) -> dict[str, Any]:
        settings = self.hooks.generic
        assert settings is not None
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        given = bearer.strip() if scheme.lower() == "bearer" else query.get("token")
        if not signatures.secret_matches(given, settings.token):
            raise _unauthorized("send Authorization: Bearer <bounces.webhooks.generic.token>")
        return self._record("generic", feedback.generic_events(_json(raw)), now)


def _basic_auth(headers: Headers) -> tuple[str | None, str | None]:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return (user, password) if sep else (None, None)


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise FeedbackRejected(400, "bad_json", f"the body is not JSON: {e}") from None


def _json_object(raw: bytes) -> Mapping[str, Any]:
    data = _json(raw)
    if not isinstance(data, Mapping):
        raise _invalid("the body is not a JSON object")
    return data


def _invalid(detail: str) -> FeedbackRejected:
    return FeedbackRejected(400, "invalid_payload", detail)


def _unauthorized(hint: str) -> FeedbackRejected:
    return FeedbackRejected(401, "unauthorized", hint)


async def _not_configured(request: Request) -> JSONResponse:
    return _error(
        404, "not_found", f"no webhook at {request.url.path} (see bounces.webhooks in the config)"
    )


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)
