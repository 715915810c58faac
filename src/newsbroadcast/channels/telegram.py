"""The `telegram` channel: the Bot API's ``sendMessage`` to a channel, in HTML parse mode.

The stored post text is plain; it is escaped for HTML here (``<``, ``>``, ``&``) and each
link becomes an ``<a>`` showing the link itself, so the visible text — what Telegram's
4,096-character limit counts — is exactly the stored text. Telegram counts UTF-16 code
units, which ``measure`` does too (an emoji outside the BMP is 2).

The Bot API has no idempotency key and a bot cannot read its channel's history, so an
attempt whose answer was lost (a read timeout, a dropped connection, a crash before our
commit) cannot be settled. Such a post is marked failed rather than sent again ("never
twice"), unless ``resend_unconfirmed`` prefers a possible duplicate to a possible loss.
An attempt known not to have posted (refused with an answer, or a connection that never
opened) is retried normally while this process lives.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

import httpx

from newsbroadcast.channels import richtext
from newsbroadcast.channels.base import OutgoingPost, Payload, Published
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)

log = logging.getLogger("newsbroadcast.channels.telegram")

MAX_LENGTH = 4096
_TOKEN_IN_PATH = re.compile(r"/bot[^/\s]+/")


class _HideBotToken(logging.Filter):
    """httpx logs each request's URL, and the Bot API puts the token in the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/bot" in message:
            record.msg, record.args = _TOKEN_IN_PATH.sub("/bot<token>/", message), ()
        return True


logging.getLogger("httpx").addFilter(_HideBotToken())


def measure(text: str) -> int:
    """UTF-16 code units, as Telegram counts message length."""
    return len(text.encode("utf-16-le")) // 2


def to_html(text: str) -> str:
    """``text`` for parse_mode HTML: everything escaped, each URL an ``<a>`` to itself."""
    out = []
    at = 0
    for span in richtext.links(text):
        out.append(html.escape(text[at : span.start], quote=False))
        href = html.escape(span.value, quote=True)
        out.append(f'<a href="{href}">{html.escape(span.value, quote=False)}</a>')
        at = span.end
    out.append(html.escape(text[at:], quote=False))
    return "".join(out)


def message_url(chat_id: str, message_id: int) -> str | None:
    """The t.me link of a message: public channels by name, private ones by number."""
    if chat_id.startswith("@"):
        return f"https://t.me/{chat_id[1:]}/{message_id}"
    if chat_id.startswith("-100"):
        return f"https://t.me/c/{chat_id[4:]}/{message_id}"
    return None


class TelegramChannel:
    def __init__(
        self,
        name: str,
        *,
        token: str,
        chat_id: str,
        api_url: str = "https://api.telegram.org",
        link_preview: bool = True,
        silent: bool = False,
        resend_unconfirmed: bool = False,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.limit = MAX_LENGTH
        self.chat_id = chat_id
        self.link_preview = link_preview
        self.silent = silent
        self.resend_unconfirmed = resend_unconfirmed
        self._endpoint = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self._token = token
        self._http = http or httpx.Client(timeout=timeout)

    def measure(self, text: str) -> int:
        return measure(text)

    def publish(self, post: OutgoingPost) -> Published:
        if not self._token:
            raise TransportConfigError(
                f"channel {self.name!r}: the Telegram bot token is empty "
                "(set it in the environment)"
            )
        if post.first_attempt_at is not None and not self.resend_unconfirmed:
            raise PermanentSendError(
                f"an earlier attempt (from {post.first_attempt_at:%Y-%m-%d %H:%M} UTC) may "
                "have been posted and Telegram cannot confirm it: not sent again; check the "
                "channel (resend_unconfirmed: true prefers a duplicate to a loss)"
            )
        try:
            response = self._http.post(self._endpoint, json=self.message(post))
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            # The request never left: the dispatcher forgets this attempt.
            raise TransientSendError(f"Telegram unreachable: {e!r}", unsent=True) from e
        except httpx.HTTPError as e:
            raise TransientSendError(
                f"no answer from Telegram ({e!r}); the message may have been sent"
            ) from e
        try:
            return self._outcome(response)
        except TransientSendError as e:
            e.unsent = True  # Telegram answered with a refusal: nothing was posted
            raise

    def message(self, post: OutgoingPost) -> dict[str, Any]:
        """The ``sendMessage`` body for ``post``: what ``publish`` sends and ``preview``
        shows."""
        return {
            "chat_id": self.chat_id,
            "text": to_html(post.text),
            "parse_mode": "HTML",
            "disable_notification": self.silent,
            "link_preview_options": (
                {"is_disabled": False, "url": post.url}
                if self.link_preview and post.url
                else {"is_disabled": not self.link_preview}
            ),
        }

    def preview(self, post: OutgoingPost) -> Payload:
        return Payload("POST /bot<token>/sendMessage", self.message(post))

    def check(self) -> str:
        """Which bot the token is (``getMe``) and whether it sees the chat (``getChat``);
        sends nothing."""
        if not self._token:
            raise TransportConfigError(
                f"channel {self.name!r}: the Telegram bot token is empty "
                "(set it in the environment)"
            )
        bot = self._ask("getMe", {}, "the bot token")
        chat = self._ask("getChat", {"chat_id": self.chat_id}, f"the chat {self.chat_id}")
        title = chat.get("title") or chat.get("username") or chat.get("id")
        return f"bot @{bot.get('username')}; chat {self.chat_id}: {chat.get('type')} {title!r}"

    def _ask(self, method: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """One Bot API call's ``result``; a refusal is a TransportConfigError naming
        ``what`` was refused and the channel."""
        url = self._endpoint.rsplit("/", 1)[0] + "/" + method
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as e:
            raise TransientSendError(f"Telegram unreachable: {e!r}") from e
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 200 and answer.get("ok"):
            return dict(answer.get("result") or {})
        description = answer.get("description") or response.reason_phrase
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientSendError(f"Telegram answered {response.status_code}: {description}")
        hint = {
            "getMe": "check the token from @BotFather",
            "getChat": "check chat_id, and add the bot to the channel as an administrator",
        }[method]
        raise TransportConfigError(
            f"channel {self.name!r}: Telegram refused {what} ({response.status_code} "
            f"{description}): {hint}"
        )

    def _outcome(self, response: httpx.Response) -> Published:
        try:
            body = response.json()
        except ValueError:
            body = {}
        description = body.get("description") or response.reason_phrase
        status = response.status_code
        if status == 200 and body.get("ok"):
            message_id = int(body["result"]["message_id"])
            return Published(str(message_id), message_url(self.chat_id, message_id))
        if status == 429:
            retry_after = float((body.get("parameters") or {}).get("retry_after") or 30)
            raise RateLimited(f"Telegram: {description}", retry_after, reply=description)
        if status >= 500:
            raise TransientSendError(f"Telegram answered {status}: {description}", description)
        if status in (401, 403, 404):
            # A wrong token (401/404) or a bot that is not an admin of the channel (403):
            # every post would fail the same way until a person fixes it.
            raise TransportConfigError(f"Telegram answered {status}: {description}", description)
        raise PermanentSendError(f"Telegram refused the message: {description}", description)
