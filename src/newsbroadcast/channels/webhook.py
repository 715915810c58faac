"""The `webhook` channel: each post POSTed as JSON to a URL, signed.

Shapes: ``slack`` (``{"text": …}``, an incoming-webhook message), ``discord``
(``{"content": …, "embeds": [a link card]}``) and ``generic`` (the post's fields, for
receivers of your own).

Headers a receiver may rely on:

- ``X-Newsbroadcast-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body with the shared
  secret (when one is set). Compare in constant time before parsing.
- ``X-Newsbroadcast-Timestamp``: Unix seconds when the request was made; the generic body
  carries the same value as ``sent_at``, so the signature covers it (reject stale ones).
- ``Idempotency-Key``: fixed per (site, story, channel) across retries and databases: a
  receiver that saw it already should answer 2xx and do nothing, which makes a retried
  request (or a story met again after the site moved to another database) harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from newsbroadcast.channels import richtext
from newsbroadcast.channels.base import OutgoingPost, Payload, Published
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from newsbroadcast.render.social import shorten
from newsbroadcast.render.templates import html_to_text

Format = Literal["generic", "slack", "discord"]
SIGNATURE_HEADER = "X-Newsbroadcast-Signature"
TIMESTAMP_HEADER = "X-Newsbroadcast-Timestamp"
# Discord refuses content over 2,000 characters; Slack advises 4,000 per message.
DEFAULT_LIMITS: dict[str, int] = {"slack": 4000, "discord": 2000, "generic": 4000}


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def idempotency_key(post: OutgoingPost) -> str:
    """Fixed for one story on one channel of one site, whatever database holds it."""
    return post.key.hex()[:32]


def slack_text(text: str) -> str:
    """Slack's mrkdwn: ``&``, ``<`` and ``>`` escaped, links as ``<url>``."""

    def escape(s: str) -> str:
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out, at = [], 0
    for span in richtext.links(text):
        out.append(escape(text[at : span.start]) + f"<{escape(span.value)}>")
        at = span.end
    out.append(escape(text[at:]))
    return "".join(out)


def payload(post: OutgoingPost, shape: Format, sent_at: int) -> dict[str, Any]:
    if shape == "slack":
        return {"text": slack_text(post.text)}
    if shape == "discord":
        embed: dict[str, Any] = {"title": post.title[:256]}
        if post.url:
            embed["url"] = post.url
        summary = html_to_text(post.summary or "")
        if summary:
            embed["description"] = shorten(summary, 4096)
        if post.image:
            embed["thumbnail"] = {"url": post.image}
        # Mentions in a story's text must never ping anyone.
        return {"content": post.text, "embeds": [embed], "allowed_mentions": {"parse": []}}
    return {
        "post_id": post.post_id,
        "article_id": post.article_id,
        "channel": post.channel,
        "title": post.title,
        "url": post.url,
        "text": post.text,
        "sent_at": sent_at,
    }


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(float(value), 1.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(value).timestamp() - time.time(), 1.0)
            except (TypeError, ValueError):
                pass
    try:
        return max(float(response.json().get("retry_after", 60)), 1.0)  # Discord's body
    except (ValueError, AttributeError):
        return 60.0


class WebhookChannel:
    def __init__(
        self,
        name: str,
        *,
        url: str,
        shape: Format = "generic",
        secret: str | None = None,
        limit: int | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        clock: Any = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.shape = shape
        self.secret = secret
        self.limit = limit or DEFAULT_LIMITS[shape]
        self.clock = clock
        self._http = http or httpx.Client(timeout=timeout)

    def measure(self, text: str) -> int:
        return len(text)

    def preview(self, post: OutgoingPost) -> Payload:
        signed = f"{SIGNATURE_HEADER}: sha256 HMAC of the body"
        notes = [
            f"Idempotency-Key: {idempotency_key(post)}",
            signed if self.secret else "unsigned (no secret set)",
        ]
        body = payload(post, self.shape, int(self.clock()))
        return Payload(f"POST {self.url} ({self.shape})", body, (), tuple(notes))

    def publish(self, post: OutgoingPost) -> Published:
        sent_at = int(self.clock())
        body = json.dumps(payload(post, self.shape, sent_at), ensure_ascii=False).encode()
        key = idempotency_key(post)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            TIMESTAMP_HEADER: str(sent_at),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        # Discord answers with the message (and its id) only when asked to wait.
        params = {"wait": "true"} if self.shape == "discord" else None
        try:
            response = self._http.post(self.url, content=body, headers=headers, params=params)
        except httpx.HTTPError as e:
            raise TransientSendError(f"webhook {self.url}: {e!r}") from e
        return self._outcome(response, key)

    def _outcome(self, response: httpx.Response, key: str) -> Published:
        status = response.status_code
        reply = f"{status} {response.text[:200]}".strip()
        if 200 <= status < 300:
            remote_id = key
            try:
                answer = response.json()
                if isinstance(answer, dict) and answer.get("id") is not None:
                    remote_id = str(answer["id"])
            except ValueError:
                pass  # Slack answers "ok" as text
            return Published(remote_id)
        if status == 429:
            raise RateLimited(f"webhook {self.url}: rate limited", _retry_after(response), reply)
        if status >= 500 or status in (408, 425):
            raise TransientSendError(f"webhook {self.url} answered {reply}", reply)
        if status in (401, 403, 404, 410):
            # Wrong secret, or a webhook that was deleted: only a person can fix it, and
            # every post would fail alike.
            raise TransportConfigError(f"webhook {self.url} answered {reply}", reply)
        raise PermanentSendError(f"webhook {self.url} refused the post: {reply}", reply)
