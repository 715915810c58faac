"""The Telegram Bot API's sendMessage on loopback, as strict as Telegram about HTML.

``POST /bot<token>/sendMessage`` with a JSON body. With ``parse_mode: HTML`` the text is
parsed the way Telegram documents it: only its tags (b, i, u, s, a, code, pre, …), every
tag closed in order, ``<``, ``>`` and ``&`` outside tags and entities refused, only the
named entities ``&lt; &gt; &amp; &quot;``; the visible text must be 1–4096 UTF-16 units.
A refused message gets Telegram's 400 "Bad Request: can't parse entities: …".
``getMe`` and ``getChat`` answer as Telegram does for the bot and the chats in ``chats``
(400 "Bad Request: chat not found" for others); a token that is not the bot's gets 401
"Unauthorized", as from Telegram for a revoked or mistyped token.
``rate_limit_next`` answers 429 with ``parameters.retry_after``; ``drop_next`` posts the
message and hangs up without answering (an outcome the client cannot know).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from tests.answer_hold import AnswerHold
from tests.loopback_api import ApiRequest, ApiResponse, LoopbackApi

CONTENT_TYPE = "application/json"  # what Telegram sends: no charset parameter

TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
ENTITIES = {"lt", "gt", "amp", "quot"}


class BadEntities(Exception):
    pass


class _TelegramHtml(HTMLParser):
    """Collects the visible text, refusing what Telegram refuses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.open: list[str] = []
        self.visible: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            raise BadEntities(f'unsupported start tag "{tag}"')
        if tag == "a":
            href = dict(attrs).get("href")
            if not href:
                raise BadEntities("an <a> without href")
            self._href, self._link_text = href, []
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            raise BadEntities(f'unmatched end tag "{tag}"')
        self.open.pop()
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._link_text)))
            self._href = None

    def handle_data(self, data: str) -> None:
        if any(c in data for c in "<>&"):
            raise BadEntities(f"unescaped character in {data!r}")
        self._text(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ENTITIES:
            raise BadEntities(f'unsupported entity "&{name};"')
        self._text(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self._text(html.unescape(f"&#{name};"))

    def _text(self, text: str) -> None:
        self.visible.append(text)
        if self._href is not None:
            self._link_text.append(text)

    def parse(self, text: str) -> str:
        # html.parser lets some stray "&" through ("R&D" at the end of the input): Telegram
        # does not, so every "&" must start one of the entities it knows.
        stray = re.search(r"&(?!(?:#\d+|#x[0-9A-Fa-f]+|lt|gt|amp|quot);)", text)
        if stray:
            raise BadEntities(f'unescaped "&" at {stray.start()}')
        self.feed(text)
        self.close()
        if self.open:
            raise BadEntities(f'unclosed tag "{self.open[-1]}"')
        return "".join(self.visible)


@dataclass
class BotApi:
    token: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    rate_limit_next: int = 0
    retry_after: int = 7
    drop_next: bool = False  # post the message, then hang up without answering
    # The server's own hold, shared so that tests can arm it here (tg.state.hold); the
    # state is only touched under the server's lock, so it needs none of its own.
    hold: AnswerHold = field(default_factory=AnswerHold)
    username: str = "newsroom_test_bot"
    # The chats the bot is a member of, by @username or id: what getChat finds.
    chats: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "@newsroomtest": {
                "id": -1001234567890,
                "type": "channel",
                "title": "Newsroom test",
                "username": "newsroomtest",
            }
        }
    )

    def get_me(self) -> dict[str, Any]:
        bot_id = int(self.token.split(":", 1)[0])
        user = {"id": bot_id, "is_bot": True, "first_name": "Newsroom", "username": self.username}
        return {"ok": True, "result": user}

    def get_chat(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat = self.chats.get(str(data.get("chat_id")))
        if chat is None:
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: chat not found",
            }
        return 200, {"ok": True, "result": chat}

    def send_message(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = data.get("text")
        if not isinstance(text, str):
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: text is empty",
            }
        links: list[tuple[str, str]] = []
        if data.get("parse_mode") == "HTML":
            parser = _TelegramHtml()
            try:
                text = parser.parse(text)
            except BadEntities as e:
                return 400, {
                    "ok": False,
                    "error_code": 400,
                    "description": f"Bad Request: can't parse entities: {e}",
                }
            links = parser.links
        if not text.strip():
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: text is empty",
            }
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return 400, {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message is too long",
            }
        message_id = len(self.messages) + 1
        message = {
            "message_id": message_id,
            "chat": {"id": -1001234567890, "type": "channel", "username": "newsroomtest"},
            "date": 1790000000,
            "text": text,
            "links": links,
            "request": data,
        }
        self.messages.append(message)
        return 200, {"ok": True, "result": message}


class TelegramBotApi(LoopbackApi):
    """``with TelegramBotApi("123:abc") as tg: tg.url …``; ``tg.state`` is the server."""

    methods = ("POST",)  # as before the port: anything else is the stdlib's 501

    def __init__(self, token: str = "123456:test-token") -> None:
        super().__init__()
        self.state = BotApi(token, hold=self.hold)

    def route(self, request: ApiRequest) -> ApiResponse:
        api = self.state
        api.requests += 1
        prefix, _, method = request.path.rpartition("/")
        if not prefix.startswith("/bot") or method not in ("sendMessage", "getMe", "getChat"):
            return self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if prefix != f"/bot{api.token}":
            return self._answer(
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            )
        if method == "getMe":
            return self._answer(200, api.get_me())
        if api.rate_limit_next > 0:
            api.rate_limit_next -= 1
            return self._answer(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {api.retry_after}",
                    "parameters": {"retry_after": api.retry_after},
                },
            )
        if "json" not in request.headers.get("content-type", ""):
            return self._answer(400, {"ok": False, "error_code": 400, "description": "no JSON"})
        if method == "getChat":
            return self._answer(*api.get_chat(request.json()))
        status, answer = api.send_message(request.json())
        response = self._answer(status, answer)
        response.accepted = status == 200
        if api.drop_next:
            api.drop_next = False
            response.hang_up = True
        return response

    @staticmethod
    def _answer(status: int, answer: dict[str, Any]) -> ApiResponse:
        return ApiResponse(status, answer, content_type=CONTENT_TYPE)
