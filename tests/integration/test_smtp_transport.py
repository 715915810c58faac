"""SmtpTransport against a real SMTP server on loopback (tests/smtp_sink.py)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import trustme

from newsbroadcast.errors import (
    PermanentSendError,
    TransientSendError,
    TransportConfigError,
    TransportDown,
)
from newsbroadcast.transports.base import Envelope
from newsbroadcast.transports.smtp import SmtpTransport
from tests.smtp_sink import MAX_LINE, SmtpSink, free_port

SENDER = "news@example.org"


def envelope(recipient: str, body: bytes = b"Hello.\r\n", n: int = 0) -> Envelope:
    data = (
        b"From: News <news@example.org>\r\n"
        + f"To: <{recipient}>\r\n".encode()
        + f"Message-ID: <m{n}@example.org>\r\n".encode()
        + b"Subject: Today\r\n\r\n"
        + body
    )
    return Envelope(sender=SENDER, recipient=recipient, data=data, message_id=f"m{n}@example.org")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- one connection, bytes unchanged ----------------------------------------------------


def test_many_messages_travel_over_one_connection_and_end_with_quit(smtp_sink: SmtpSink) -> None:
    recipients = [f"reader{i}@example.net" for i in range(5)]
    with SmtpTransport(smtp_sink.settings()) as transport:
        replies = [transport.send(envelope(r, n=i)) for i, r in enumerate(recipients)]
    assert all(r.startswith("250 2.0.0 Ok: queued as SINK") for r in replies)
    assert len(set(replies)) == 5
    assert smtp_sink.recipients() == recipients
    assert smtp_sink.connections == 1
    assert smtp_sink.quits == 1
    assert {m.connection for m in smtp_sink.messages} == {1}


def test_before_data_runs_after_the_envelope_and_a_failure_sends_nothing(
    smtp_sink: SmtpSink,
) -> None:
    seen: list[int] = []

    def refuse() -> None:
        raise RuntimeError("the previous send could not be recorded")

    with SmtpTransport(smtp_sink.settings()) as transport:
        # Called once MAIL FROM and RCPT TO are accepted and before the message goes out.
        transport.send(
            envelope("a@example.net", n=1), before_data=lambda: seen.append(len(smtp_sink.messages))
        )
        with pytest.raises(RuntimeError, match="could not be recorded"):
            transport.send(envelope("b@example.net", n=2), before_data=refuse)
        # The open envelope was reset: the same connection carries the next message.
        transport.send(envelope("c@example.net", n=3))
    assert seen == [0]
    assert smtp_sink.recipients() == ["a@example.net", "c@example.net"]
    assert smtp_sink.connections == 1


def test_no_connection_is_opened_for_an_empty_batch(smtp_sink: SmtpSink) -> None:
    with SmtpTransport(smtp_sink.settings()):
        pass
    assert smtp_sink.connections == 0


def test_the_server_receives_exactly_the_bytes_we_send(smtp_sink: SmtpSink) -> None:
    body = (
        b".a line starting with a dot\r\n"
        b"..two dots\r\n"
        b".\r\n"  # a lone dot must not end DATA early
        + b"x" * MAX_LINE
        + b"\r\n"
        + "8-bit: caf\u00e9 \u2014 Kigali\r\n".encode()
        + b"\r\n"
    )
    sent = envelope("reader@example.net", body)
    with SmtpTransport(smtp_sink.settings()) as transport:
        transport.send(sent)
    [received] = smtp_sink.messages
    assert received.data == sent.data
    assert received.sender == SENDER
    assert received.recipients == ("reader@example.net",)
    assert received.helo == "client.test"  # local_hostname is what EHLO says


def test_a_non_ascii_address_is_sent_with_smtputf8(smtp_sink: SmtpSink) -> None:
    with SmtpTransport(smtp_sink.settings()) as transport:
        transport.send(envelope("j\u00f6rg@example.net"))
    assert smtp_sink.recipients() == ["j\u00f6rg@example.net"]


def test_an_address_that_would_break_the_command_line_fails_that_recipient_only(
    smtp_sink: SmtpSink,
) -> None:
    with SmtpTransport(smtp_sink.settings()) as transport:
        for bad in ("a@example.net>\r\nRCPT TO:<b@example.net", "a@example.net> SIZE=1"):
            with pytest.raises(PermanentSendError, match="cannot be written in RCPT TO"):
                transport.send(envelope(bad))
        transport.send(envelope("here@example.net"))
    assert smtp_sink.recipients() == ["here@example.net"]
    assert smtp_sink.connections == 1


def test_the_sink_refuses_a_line_over_998_octets(smtp_sink: SmtpSink) -> None:
    # Guards the guard: the sink must catch the over-long lines our renderer might produce.
    with SmtpTransport(smtp_sink.settings()) as transport:
        with pytest.raises(PermanentSendError, match="Line too long"):
            transport.send(envelope("a@example.net", b"x" * (MAX_LINE + 1) + b"\r\n"))
        with pytest.raises(PermanentSendError, match="bare CR or LF"):
            transport.send(envelope("a@example.net", b"one\ntwo\r\n"))
    assert smtp_sink.messages == []


# -- refusals ----------------------------------------------------------------------------


def test_451_is_transient_and_a_retry_succeeds() -> None:
    with SmtpSink(defer={"slow@example.net": 1}) as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(TransientSendError) as caught:
                transport.send(envelope("slow@example.net"))
            assert caught.value.reply is not None and caught.value.reply.startswith("451 4.7.1")
            assert not isinstance(caught.value, TransportDown)  # only this recipient waits
            assert "slow@example.net" in str(caught.value)
            assert transport.send(envelope("slow@example.net")).startswith("250")
        assert sink.recipients() == ["slow@example.net"]
        assert sink.connections == 1


def test_550_fails_that_recipient_only_and_the_connection_carries_on() -> None:
    with SmtpSink(reject={"gone@example.net"}) as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(PermanentSendError) as caught:
                transport.send(envelope("gone@example.net"))
            assert caught.value.reply is not None and caught.value.reply.startswith("550 5.1.1")
            assert not isinstance(caught.value, TransientSendError)
            transport.send(envelope("here@example.net"))
        assert sink.recipients() == ["here@example.net"]
        assert sink.connections == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("554 5.7.1 Message refused as spam", PermanentSendError),
        ("452 4.3.1 Insufficient system storage", TransientSendError),
    ],
)
def test_a_refusal_at_the_end_of_data_is_mapped_by_its_code(
    reply: str, error: type[Exception]
) -> None:
    with SmtpSink(data_reply=reply) as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(error, match=reply[:3]):
                transport.send(envelope("a@example.net"))
            sink.data_reply = None
            transport.send(envelope("b@example.net"))
        assert sink.recipients() == ["b@example.net"]
        assert sink.connections == 1


def test_a_refused_sender_is_a_loud_config_error_that_loses_nothing() -> None:
    with SmtpSink(mail_reply="550 5.7.1 Sender address not allowed") as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(TransportConfigError, match="refuses the sender") as caught:
                transport.send(envelope("a@example.net"))
            # Transient, so the dispatcher keeps the delivery queued rather than failing it.
            assert isinstance(caught.value, TransientSendError)
            sink.mail_reply = None
            transport.send(envelope("a@example.net"))
        assert sink.connections == 1


# -- lost connections ------------------------------------------------------------------


def test_a_dropped_connection_is_transient_and_the_next_send_reconnects() -> None:
    with SmtpSink(drop_after=1) as sink:
        with SmtpTransport(sink.settings()) as transport:
            transport.send(envelope("first@example.net"))
            with pytest.raises(TransportDown, match="connection to 127.0.0.1:.* lost"):
                transport.send(envelope("second@example.net"))
            transport.send(envelope("third@example.net"))
        assert sink.recipients() == ["first@example.net", "third@example.net"]
        assert [m.connection for m in sink.messages] == [1, 2]


def test_421_closes_the_connection_and_the_next_send_reconnects() -> None:
    with SmtpSink(mail_reply="421 4.3.2 Service shutting down") as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(TransportDown, match="421"):
                transport.send(envelope("a@example.net"))
            sink.mail_reply = None
            transport.send(envelope("a@example.net"))
        assert sink.connections == 2
        assert [m.connection for m in sink.messages] == [2]


def test_a_server_that_is_down_is_transient_and_named() -> None:
    port = free_port()
    settings = SmtpSink().settings(port=port, security="none")
    expected = f"127.0.0.1:{port}.*connection refused"
    with SmtpTransport(settings) as transport, pytest.raises(TransportDown, match=expected):
        transport.send(envelope("a@example.net"))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (a hung server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for s in accepted:
        s.close()
    listener.close()


def test_a_server_that_never_answers_times_out_as_transient(silent_server: int) -> None:
    settings = SmtpSink().settings(port=silent_server, timeout=timedelta(seconds=0.3))
    started = time.monotonic()
    with SmtpTransport(settings) as transport, pytest.raises(TransportDown, match="no answer"):
        transport.send(envelope("a@example.net"))
    assert time.monotonic() - started < 3


# -- TLS -------------------------------------------------------------------------------


def test_starttls_with_a_trusted_certificate(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    with SmtpSink(starttls=server_tls) as sink:
        with SmtpTransport(sink.settings(), ssl_context=client_tls) as transport:
            transport.send(envelope("a@example.net"))
        [received] = sink.messages
        assert received.tls


def test_starttls_is_required_never_skipped(smtp_sink: SmtpSink) -> None:
    transport = SmtpTransport(smtp_sink.settings(security="starttls"))
    with transport, pytest.raises(TransportConfigError, match="does not offer STARTTLS"):
        transport.send(envelope("a@example.net"))
    assert smtp_sink.messages == []


@pytest.mark.parametrize("mode", ["starttls", "implicit_tls"])
def test_an_untrusted_certificate_fails_clearly_unless_verify_is_off(
    mode: str, server_tls: ssl.SSLContext
) -> None:
    with SmtpSink(**{mode: server_tls}) as sink:
        transport = SmtpTransport(sink.settings())  # system CAs: trustme's is not one
        untrusted = "certificate could not be verified"
        with transport, pytest.raises(TransportConfigError, match=untrusted):
            transport.send(envelope("a@example.net"))
        assert sink.messages == []
        with SmtpTransport(sink.settings(verify=False)) as transport:
            transport.send(envelope("a@example.net"))
        assert [m.tls for m in sink.messages] == [True]


def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with SmtpSink(implicit_tls=server_tls) as sink:
        assert sink.settings().security == "tls"
        with SmtpTransport(sink.settings(), ssl_context=client_tls) as transport:
            transport.send(envelope("a@example.net"))
            transport.send(envelope("b@example.net"))
        assert [m.tls for m in sink.messages] == [True, True]
        assert sink.connections == 1


# -- AUTH ------------------------------------------------------------------------------


@pytest.fixture
def auth_sink(server_tls: ssl.SSLContext) -> Iterator[SmtpSink]:
    with SmtpSink(starttls=server_tls, auth={"newsroom": "s3cret-pass"}) as sink:
        yield sink


def test_auth_after_starttls(auth_sink: SmtpSink, client_tls: ssl.SSLContext) -> None:
    settings = auth_sink.settings(username="newsroom", password="s3cret-pass")
    with SmtpTransport(settings, ssl_context=client_tls) as transport:
        transport.send(envelope("a@example.net"))
    [received] = auth_sink.messages
    assert received.login == "newsroom"
    assert received.tls


def test_a_wrong_password_is_a_loud_config_error_that_loses_nothing(
    auth_sink: SmtpSink, client_tls: ssl.SSLContext
) -> None:
    settings = auth_sink.settings(username="newsroom", password="wrong")
    transport = SmtpTransport(settings, ssl_context=client_tls)
    with transport, pytest.raises(TransportConfigError, match="535.*check smtp") as caught:
        transport.send(envelope("a@example.net"))
    assert isinstance(caught.value, TransientSendError)
    assert "wrong" not in str(caught.value)  # the password itself is never repeated
    assert auth_sink.messages == []


def test_missing_credentials_where_auth_is_required(
    auth_sink: SmtpSink, client_tls: ssl.SSLContext
) -> None:
    transport = SmtpTransport(auth_sink.settings(), ssl_context=client_tls)
    with transport, pytest.raises(TransportConfigError, match="530"):
        transport.send(envelope("a@example.net"))


def test_username_without_password_is_refused_up_front(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TransportConfigError, match="both username and password"):
        SmtpTransport(smtp_sink.settings(username="newsroom"))


def test_auth_in_clear_text_only_when_security_is_none() -> None:
    with SmtpSink(auth={"relay": "pw"}) as sink:
        with SmtpTransport(sink.settings(username="relay", password="pw")) as transport:
            transport.send(envelope("a@example.net"))
        assert [m.login for m in sink.messages] == ["relay"]


# -- check -----------------------------------------------------------------------------


def test_check_connects_logs_in_and_quits_without_sending(
    auth_sink: SmtpSink, client_tls: ssl.SSLContext
) -> None:
    settings = auth_sink.settings(username="newsroom", password="s3cret-pass")
    summary = SmtpTransport(settings, ssl_context=client_tls).check()
    assert f"127.0.0.1:{auth_sink.port}" in summary
    assert "TLS" in summary and "logged in as newsroom" in summary
    assert auth_sink.connections == 1
    assert auth_sink.quits == 1
    assert auth_sink.messages == []


def test_check_reports_a_wrong_password(auth_sink: SmtpSink, client_tls: ssl.SSLContext) -> None:
    settings = auth_sink.settings(username="newsroom", password="nope")
    with pytest.raises(TransportConfigError, match="refused the login of 'newsroom'"):
        SmtpTransport(settings, ssl_context=client_tls).check()
