"""The telegram channel against a Bot API server on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from newsbroadcast.channels.base import OutgoingPost
from newsbroadcast.channels.telegram import TelegramChannel
from newsbroadcast.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    TransportConfigError,
)
from tests.telegram_bot_api import TelegramBotApi

TOKEN = "123456:test-token"


@pytest.fixture
def tg() -> Iterator[TelegramBotApi]:
    with TelegramBotApi(TOKEN) as server:
        yield server


def channel(
    tg: TelegramBotApi, token: str = TOKEN, chat_id: str = "@newsroomtest"
) -> TelegramChannel:
    return TelegramChannel("tg", token=token, chat_id=chat_id, api_url=tg.url, timeout=5)


def post(text: str, url: str | None = "https://newsroom.example.org/a?x=1&y=2") -> OutgoingPost:
    return OutgoingPost(1, 1, "tg", text, url, "Title", story="site\nnewsroom\nstory-1")


def test_html_special_characters_arrive_as_written_and_the_link_is_an_anchor(
    tg: TelegramBotApi,
) -> None:
    text = 'R&D <b>not bold</b> "quoted" 5 > 3 → https://newsroom.example.org/a?x=1&y=2 #Tag'
    published = channel(tg).publish(post(text))
    (message,) = tg.state.messages
    assert message["text"] == text  # Telegram's parse of our HTML shows exactly the text
    assert message["links"] == [("https://newsroom.example.org/a?x=1&y=2",) * 2]
    assert message["request"]["parse_mode"] == "HTML"
    assert published.remote_id == "1"
    assert published.remote_url == "https://t.me/newsroomtest/1"


def test_a_private_channel_links_by_number(tg: TelegramBotApi) -> None:
    published = channel(tg, chat_id="-1001234567890").publish(post("Hello"))
    assert published.remote_url == "https://t.me/c/1234567890/1"


def test_429_becomes_a_wait_of_retry_after_seconds(tg: TelegramBotApi) -> None:
    tg.state.rate_limit_next = 1
    tg.state.retry_after = 17
    with pytest.raises(RateLimited) as caught:
        channel(tg).publish(post("Hello"))
    assert caught.value.retry_after == 17
    assert tg.state.messages == []
    channel(tg).publish(post("Hello"))
    assert len(tg.state.messages) == 1


def test_a_refused_message_is_permanent_with_telegrams_description(tg: TelegramBotApi) -> None:
    with pytest.raises(PermanentSendError, match="message is too long"):
        channel(tg).publish(post("x" * 4097, url=None))


def test_4096_utf16_units_is_the_limit(tg: TelegramBotApi) -> None:
    ch = channel(tg)
    text = "😀" * 2048  # 2048 characters, 4096 UTF-16 units
    assert ch.measure(text) == ch.limit
    ch.publish(post(text, url=None))
    assert len(tg.state.messages) == 1


def test_a_wrong_token_is_a_configuration_problem(tg: TelegramBotApi) -> None:
    with pytest.raises(TransportConfigError):
        channel(tg, token="999:wrong").publish(post("Hello"))


def test_the_bot_token_stays_out_of_the_logs(
    tg: TelegramBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel(tg).publish(post("Hello"))
    assert "sendMessage" in caplog.text  # httpx did log the request …
    assert "test-token" not in caplog.text  # … without the token in its path


def retried(p: OutgoingPost) -> OutgoingPost:
    return replace(p, first_attempt_at=datetime(2026, 11, 29, 5, 0, tzinfo=UTC))


def test_a_post_whose_answer_was_lost_is_not_sent_again(tg: TelegramBotApi) -> None:
    ch = channel(tg)
    tg.state.drop_next = True  # Telegram posted it; the answer never came
    with pytest.raises(TransientSendError, match="may have been sent"):
        ch.publish(post("Hello"))
    with pytest.raises(PermanentSendError, match="cannot confirm"):
        ch.publish(retried(post("Hello")))
    # Nor after a restart: a new process knows nothing of the earlier attempt's outcome.
    with pytest.raises(PermanentSendError):
        channel(tg).publish(retried(post("Hello")))
    assert len(tg.state.messages) == 1


def test_a_refused_attempt_says_it_published_nothing(tg: TelegramBotApi) -> None:
    ch = channel(tg)
    tg.state.rate_limit_next = 1
    with pytest.raises(RateLimited) as refused:
        ch.publish(post("Hello"))
    # The dispatcher then forgets the attempt (first_attempt_at back to None) in the row.
    assert refused.value.unsent
    ch.publish(post("Hello"))
    assert len(tg.state.messages) == 1


def test_resend_unconfirmed_prefers_a_duplicate_to_a_loss(tg: TelegramBotApi) -> None:
    ch = TelegramChannel(
        "tg", token=TOKEN, chat_id="@newsroomtest", api_url=tg.url, resend_unconfirmed=True
    )
    tg.state.drop_next = True
    with pytest.raises(TransientSendError):
        ch.publish(post("Hello"))
    ch.publish(retried(post("Hello")))
    assert len(tg.state.messages) == 2


def test_preview_is_the_sendmessage_body_publish_sends(tg: TelegramBotApi) -> None:
    tg_post = post("Tom & Jerry <3 https://newsroom.example.org/a?x=1&y=2")
    shown = channel(tg).preview(tg_post)
    assert tg.state.requests == 0  # a preview sends nothing
    channel(tg).publish(tg_post)
    (message,) = tg.state.messages
    assert shown.body == message["request"]
    assert shown.body["parse_mode"] == "HTML" and "&amp;" in shown.body["text"]
    assert "<token>" in shown.request and TOKEN not in shown.request


def test_check_names_the_bot_and_the_chat_and_sends_nothing(tg: TelegramBotApi) -> None:
    detail = channel(tg).check()
    assert detail == "bot @newsroom_test_bot; chat @newsroomtest: channel 'Newsroom test'"
    assert tg.state.messages == []


def test_check_with_a_wrong_token_names_the_channel_and_telegrams_answer(
    tg: TelegramBotApi,
) -> None:
    with pytest.raises(TransportConfigError) as refused:
        channel(tg, token="999:wrong").check()
    assert "channel 'tg'" in str(refused.value)
    assert "401 Unauthorized" in str(refused.value) and "@BotFather" in str(refused.value)


def test_check_of_a_chat_the_bot_is_not_in_says_so(tg: TelegramBotApi) -> None:
    with pytest.raises(TransportConfigError) as refused:
        channel(tg, chat_id="@elsewhere").check()
    assert "the chat @elsewhere" in str(refused.value)
    assert "chat not found" in str(refused.value) and "administrator" in str(refused.value)
