"""SMTP with PIPELINING (RFC 2920), against a real server on loopback that offers it:
MAIL, RCPT and DATA go in one write, and every outcome maps as without it; through the
dispatcher, each outcome is still recorded before the next message's content leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from newsbroadcast.db.engine import make_engine, sessions, upgrade
from newsbroadcast.db.models import Delivery, SendStatus, Subscriber
from newsbroadcast.errors import PermanentSendError, TransientSendError, TransportConfigError
from newsbroadcast.transports.base import Envelope
from newsbroadcast.transports.smtp import SmtpTransport
from tests.integration.delivery_site import add_subscribers, plan_edition, service_for, write_site
from tests.smtp_sink import ReceivedMessage, SmtpSink


def envelope(recipient: str, n: int = 0) -> Envelope:
    data = f"Subject: {n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\nHello.\r\n".encode()
    return Envelope("digest@example.org", recipient, data, f"m{n}@example.org")


@pytest.mark.parametrize(("pipelining", "expected"), [(False, []), (True, ["called"])])
def test_the_envelope_is_pipelined_when_the_server_offers_it(
    pipelining: bool, expected: list[str]
) -> None:
    # before_data runs before any reply is read: here even for a refused sender, which
    # without pipelining is known (and refused) before it could run.
    seen: list[str] = []
    with (
        SmtpSink(mail_reply="550 5.7.1 Sender refused", pipelining=pipelining) as sink,
        SmtpTransport(sink.settings()) as transport,
        pytest.raises(TransportConfigError, match="refuses the sender"),
    ):
        transport.send(envelope("a@example.net"), before_data=lambda: seen.append("called"))
    assert seen == expected


def test_messages_arrive_whole_over_one_connection() -> None:
    with SmtpSink(pipelining=True) as sink:
        with SmtpTransport(sink.settings()) as transport:
            replies = [transport.send(envelope(f"r{i}@example.net", n=i)) for i in range(3)]
        assert [m.data for m in sink.messages] == [envelope("", n=i).data for i in range(3)]
        assert sink.recipients() == ["r0@example.net", "r1@example.net", "r2@example.net"]
        assert all(r.startswith("250 ") for r in replies)
        assert sink.connections == 1 and sink.quits == 1


def test_a_refused_recipient_fails_alone_and_the_connection_carries_on() -> None:
    with SmtpSink(reject={"gone@example.net"}, defer={"later@example.net": 1},
                  pipelining=True) as sink:  # fmt: skip
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(PermanentSendError, match="550 5.1.1"):
                transport.send(envelope("gone@example.net"))
            with pytest.raises(TransientSendError, match="451"):
                transport.send(envelope("later@example.net"))
            transport.send(envelope("later@example.net", n=1))
            transport.send(envelope("here@example.net", n=2))
        assert sink.recipients() == ["later@example.net", "here@example.net"]
        assert sink.connections == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [("554 5.7.1 Message refused as spam", PermanentSendError),
     ("452 4.3.1 Insufficient system storage", TransientSendError)],
)  # fmt: skip
def test_a_refusal_at_the_end_of_data_is_mapped_by_its_code(
    reply: str, error: type[Exception]
) -> None:
    with SmtpSink(data_reply=reply, pipelining=True) as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(error, match=reply[:3]):
                transport.send(envelope("a@example.net"))
            sink.data_reply = None
            transport.send(envelope("b@example.net", n=1))
        assert sink.recipients() == ["b@example.net"]
        assert sink.connections == 1


def test_a_failure_before_data_sends_nothing_and_the_next_message_goes_out() -> None:
    def refuse() -> None:
        raise RuntimeError("the previous send could not be recorded")

    with SmtpSink(pipelining=True) as sink:
        with SmtpTransport(sink.settings()) as transport:
            with pytest.raises(RuntimeError, match="could not be recorded"):
                transport.send(envelope("b@example.net", n=1), before_data=refuse)
            # DATA may have been open: the connection was closed, so nothing was accepted.
            transport.send(envelope("c@example.net", n=2))
        assert sink.recipients() == ["c@example.net"]


def test_each_outcome_is_recorded_before_the_next_message_arrives(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    unrecorded: list[str] = []
    received: list[str] = []

    def look(message: ReceivedMessage) -> None:
        # The server has this message, not yet replied: every earlier one is `sent`.
        with sessions(engine)() as session:
            sent = set(
                session.scalars(
                    select(Subscriber.email)
                    .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                    .where(Delivery.status == SendStatus.sent)
                )
            )
        unrecorded.extend(r for r in received if r not in sent)
        received.extend(message.recipients)

    with SmtpSink(pipelining=True, on_data=look) as sink:
        config = write_site(tmp_path, database_url, sink.port, smtp={"connections": 1},
                            email={"batch_size": 7})  # fmt: skip
        everyone = add_subscribers(engine, 25)
        service = service_for(config, engine)
        plan_edition(service)
        report = service.dispatch()
        service.close()
    engine.dispose()
    assert report.sent == 25 and sorted(received) == sorted(everyone)
    assert unrecorded == []
